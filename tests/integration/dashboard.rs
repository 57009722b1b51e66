//! The web dashboard in a real headless Chromium against a local cluster
//! of node processes: a wrong TOTP code is refused, the right one logs
//! in, the actors table fills from the server's stream, the detail pane
//! shows the actor's state, and a confirmed restart shows in its restart
//! count. Needs Chromium (`tools::require` installs it or fails the
//! test with the command that does).
//!
//! With `SWARM_SCREENSHOTS=DIR` it also saves `dashboard.png` there (the
//! README's picture).

use swarm_cli::local::LocalCluster;

use crate::admin_api::set_password;
use crate::browser::Browser;
use crate::tools::{require, Tool};
use crate::util::{admin_code_in, exe, place_account, scratch};

/// Fills the login form and submits it.
fn log_in(browser: &mut Browser, password: &str, code: &str) {
    let script = format!(
        "(() => {{ document.getElementById('name').value = 'admin';
                  document.getElementById('password').value = {password:?};
                  document.getElementById('code').value = {code:?};
                  document.getElementById('login-button').click(); return true; }})()"
    );
    browser.eval(&script);
}

#[test]
fn the_dashboard_logs_in_with_totp_shows_actors_and_restarts_one() {
    let Some(chromium) = require(Tool::Chromium, "the dashboard test") else {
        return;
    };
    let dir = scratch("dashboard");
    let mut cluster = LocalCluster::start_control_admin(&exe(), &dir, 1, 1, &[]).unwrap();
    cluster.remove_dir_on_drop(true);
    place_account(&cluster);
    set_password(&cluster);
    let base = format!("https://{}/", cluster.nodes[0].admin.unwrap());

    let mut browser = Browser::start(&chromium, &dir, 1400, 800);
    browser.goto(&base);
    // The page's script is ready once it decided the login form shows.
    browser.wait("the login form", "document.body.dataset.ready == 'login'");

    // A wrong code: refused, and the console stays hidden.
    log_in(&mut browser, crate::admin_api::PASSWORD, "000000");
    let error = browser.wait(
        "the refusal",
        "document.getElementById('login-error').textContent",
    );
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("wrong name, password or TOTP code"),
        "{error}"
    );
    let shown =
        |id: &str| format!("getComputedStyle(document.getElementById('{id}')).display != 'none'");
    assert_eq!(browser.eval(&shown("console")), false);
    assert_eq!(browser.eval(&shown("login")), true);

    // The right one (the next step's: passwd used this one's).
    log_in(
        &mut browser,
        crate::admin_api::PASSWORD,
        &admin_code_in(&cluster.dir, 1),
    );
    browser.wait("logged in", &shown("console"));
    assert_eq!(browser.eval(&shown("login")), false);
    let who = browser.eval("document.getElementById('who').textContent");
    assert!(who.as_str().unwrap().contains("admin"), "{who}");

    // The nodes fill from the stream, then the actors.
    browser.wait(
        "both nodes",
        "document.querySelectorAll('#table tbody tr').length == 2",
    );
    browser.eval("document.querySelector('#tabs [data-view=actors]').click()");
    let row = "document.querySelector('#table tbody tr[data-name=account]')";
    browser.wait(
        "the account row",
        &format!("{row}.textContent.includes('running')"),
    );
    // Sorting by backlog marks that column.
    browser.eval("document.querySelector('th[data-sort=backlog]').click()");
    browser.wait(
        "sorted by backlog",
        "document.querySelector('th.sorted').textContent == 'backlog'",
    );

    // Its detail pane, with the state its inspect hook gives.
    browser.eval(&format!("{row}.click()"));
    browser.wait(
        "the detail pane",
        "document.getElementById('detail-title').textContent.startsWith('account on n')",
    );
    browser.wait(
        "the ledger's state",
        "document.getElementById('detail-state').textContent.includes('\"balance\": 7')",
    );
    // Its journal (the ledger is durable).
    browser.wait(
        "the ledger's journal",
        "(document.querySelector('dd[data-field=journal]')?.textContent || '').startsWith('embedded, epoch')",
    );
    let recovery = browser.eval("document.querySelector('dd[data-field=recovery]').textContent");
    assert!(recovery.as_str().unwrap().ends_with(" ms"), "{recovery}");
    let restarts = "document.querySelector('dd[data-field=restarts]').textContent";
    assert_eq!(browser.eval(restarts), "0");

    if let Ok(out) = std::env::var("SWARM_SCREENSHOTS") {
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(
            std::path::Path::new(&out).join("dashboard.png"),
            browser.screenshot(),
        )
        .unwrap();
    }

    // Restart it: asked first, then done, then counted.
    browser.eval("document.getElementById('restart').click()");
    browser.wait(
        "the confirmation",
        "!document.getElementById('confirm').hidden && document.getElementById('confirm-text').textContent.includes('account')",
    );
    browser.eval("document.getElementById('confirm-yes').click()");
    browser.wait(
        "the restart done",
        "document.getElementById('status').textContent.includes('restarted account')",
    );
    browser.wait("the restart counted", &format!("{restarts} == '1'"));
    browser.wait(
        "the restart in the actor's history",
        "document.getElementById('detail-history').textContent.includes(\"operator's request\")",
    );
}
