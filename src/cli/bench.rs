pub(crate) fn link(_json: bool, _scale: f64) -> anyhow::Result<()> {
    Ok(())
}
