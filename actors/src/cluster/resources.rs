//! What a node offers and how busy it is: CPUs and memory from sysinfo,
//! GPUs from NVML where a driver exists, all overridable from the command
//! line (`--cpus`, `--gpus`, `--memory`, `--resource NAME=AMOUNT`) so
//! placement can be tested without the hardware.

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use swarm_protocol::gossip::meta::Load;
use swarm_protocol::gossip::Resources;

/// Declared resources that replace or extend what is detected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceOverrides {
    /// CPUs to announce instead of the detected count.
    pub cpus: Option<f64>,
    /// GPUs to announce instead of the detected count.
    pub gpus: Option<u32>,
    /// Memory in bytes to announce instead of the detected total.
    pub memory: Option<u64>,
    /// Custom resources (`NAME=AMOUNT`), e.g. `tpu=4`.
    pub custom: Vec<(String, f64)>,
}

/// Reads resources and load from the machine.
pub(crate) struct Probe {
    system: Option<System>,
    nvml: Option<nvml_wrapper::Nvml>,
}

impl Probe {
    /// Opens sysinfo and NVML. Without an NVML driver there are zero GPUs
    /// (or the `declared_gpus`) and one log line, never an error.
    pub(crate) fn new(declared_gpus: Option<u32>) -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .map_err(|e| tracing::warn!(error = %e, "sysinfo unavailable: CPU and memory read as 0"))
        .ok();
        let nvml = match nvml_wrapper::Nvml::init() {
            Ok(nvml) => Some(nvml),
            Err(e) => {
                tracing::info!(reason = %e, "{}", no_driver_note(declared_gpus));
                None
            }
        };
        Self { system, nvml }
    }

    /// The resources to announce: detected, then overridden.
    pub(crate) fn resources(&self, overrides: &ResourceOverrides) -> Resources {
        let (cpus, memory) = match &self.system {
            Some(system) => (system.cpus().len() as f64, system.total_memory()),
            None => (0.0, 0),
        };
        let (gpus, gpu_memory) = self.gpus();
        let mut custom = overrides.custom.clone();
        custom.sort_by(|a, b| a.0.cmp(&b.0));
        custom.dedup_by(|a, b| a.0 == b.0);
        Resources {
            cpus: overrides.cpus.unwrap_or(cpus),
            memory: overrides.memory.unwrap_or(memory),
            gpus: overrides.gpus.unwrap_or(gpus),
            gpu_memory: if overrides.gpus == Some(0) {
                0
            } else {
                gpu_memory
            },
            custom,
        }
    }

    fn gpus(&self) -> (u32, u64) {
        let Some(nvml) = &self.nvml else {
            return (0, 0);
        };
        let count = nvml.device_count().unwrap_or(0);
        let memory = (0..count)
            .filter_map(|i| nvml.device_by_index(i).ok())
            .filter_map(|d| d.memory_info().ok())
            .map(|m| m.total)
            .sum();
        (count, memory)
    }

    /// Current load. CPU use needs two refreshes some time apart; the
    /// first call after start reports the use since the probe opened.
    pub(crate) fn load(&mut self) -> Load {
        let mut load = Load::default();
        if let Some(system) = &mut self.system {
            system.refresh_cpu_usage();
            system.refresh_memory();
            load.cpu_percent = system.global_cpu_usage();
            load.memory_used = system.used_memory();
        }
        if let Some(nvml) = &self.nvml {
            let count = nvml.device_count().unwrap_or(0);
            let utils: Vec<u32> = (0..count)
                .filter_map(|i| nvml.device_by_index(i).ok())
                .filter_map(|d| d.utilization_rates().ok())
                .map(|u| u.gpu)
                .collect();
            if !utils.is_empty() {
                load.gpu_percent = utils.iter().sum::<u32>() as f32 / utils.len() as f32;
            }
        }
        load
    }
}

/// What a node without an NVML driver logs: the GPUs it will report.
fn no_driver_note(declared_gpus: Option<u32>) -> String {
    match declared_gpus {
        None => "no NVML driver: this node reports 0 GPUs".to_owned(),
        Some(gpus) => {
            format!("no NVML driver: this node reports the {gpus} GPUs it declares, at 0% load")
        }
    }
}

/// Whether `new` differs enough from `published` to be gossiped again:
/// 10 points of CPU, 5% of memory, or 10 points of GPU.
pub(crate) fn load_changed(published: &Load, new: &Load, total_memory: u64) -> bool {
    let mem_step = (total_memory / 20).max(1);
    (published.cpu_percent - new.cpu_percent).abs() >= 10.0
        || published.memory_used.abs_diff(new.memory_used) >= mem_step
        || (published.gpu_percent - new.gpu_percent).abs() >= 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_declaring_gpus_does_not_log_zero_gpus() {
        assert_eq!(
            no_driver_note(None),
            "no NVML driver: this node reports 0 GPUs"
        );
        let declared = no_driver_note(Some(2));
        assert!(declared.contains("reports the 2 GPUs"), "{declared}");
        assert!(!declared.contains("0 GPUs"), "{declared}");
    }

    #[test]
    fn no_gpu_driver_means_zero_gpus_and_overrides_win() {
        let probe = Probe::new(None);
        let detected = probe.resources(&ResourceOverrides::default());
        assert!(detected.cpus >= 1.0, "sysinfo sees at least one CPU");
        assert!(detected.memory > 0);
        let declared = probe.resources(&ResourceOverrides {
            cpus: Some(64.0),
            gpus: Some(8),
            memory: Some(1 << 40),
            custom: vec![("tpu".into(), 4.0), ("fpga".into(), 1.0)],
        });
        assert_eq!(declared.cpus, 64.0);
        assert_eq!(declared.gpus, 8);
        assert_eq!(declared.memory, 1 << 40);
        assert_eq!(
            declared.custom,
            vec![("fpga".to_string(), 1.0), ("tpu".to_string(), 4.0)]
        );
    }

    #[test]
    fn load_is_regossiped_only_on_a_real_change() {
        let base = Load {
            cpu_percent: 20.0,
            memory_used: 1000,
            gpu_percent: 0.0,
        };
        let small = Load {
            cpu_percent: 25.0,
            memory_used: 1010,
            ..base.clone()
        };
        assert!(!load_changed(&base, &small, 10_000));
        let busy = Load {
            cpu_percent: 35.0,
            ..base.clone()
        };
        assert!(load_changed(&base, &busy, 10_000));
    }
}
