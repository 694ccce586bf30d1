//! `huiliu app set-wechat`: secrets sealed under a master key kept outside the database.

use crate::{create_app, fresh_url, Backend};
use huiliu_domain::secrets::MasterKey;
use huiliu_store::Store;
use std::io::Write;
use std::process::{Command, Stdio};

const APPID: &str = "wx4f28b4b2dcaafca1";
const SECRET: &str = "3e2fa5ce1990693588816ff28e259ae0";

fn set_wechat(
    dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: &str,
) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_huiliu"))
        .args(["app", "set-wechat"])
        .args(args)
        .current_dir(dir)
        .env("HUILIU_LOG", "warn")
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

async fn secrets_are_sealed_under_a_key_outside_the_database(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_url(backend, &dir).await else {
        return;
    };
    let (app_id, _, _) = create_app(&url, "wechat");
    let key_file = dir.path().join("master.key");
    let key_file = key_file.to_str().unwrap();
    // The secret comes from standard input, not the command line.
    let output = set_wechat(
        dir.path(),
        &[
            "--app",
            &app_id,
            "--appid",
            APPID,
            "--secret",
            "-",
            "--token",
            "huiliuToken1",
            "--database-url",
            &url,
        ],
        &[("HUILIU_MASTER_KEY_FILE", key_file)],
        &format!("{SECRET}\n"),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains(APPID)
            && printed.contains("\"secret_set\":true")
            && !printed.contains(SECRET),
        "{printed}"
    );

    // A key file was created, readable by its owner only.
    let key_text = std::fs::read_to_string(key_file).unwrap();
    let key = MasterKey::parse(&key_text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    // The store holds the secret sealed; the key opens it, another key does not.
    let store = huiliu_server::open_store(&url).await.unwrap();
    let app = store
        .find_app(&huiliu_domain::apps::AppId::parse(&app_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let stored = store.get_wechat_settings(&app).await.unwrap().unwrap();
    assert!(!String::from_utf8_lossy(&stored.secret_sealed).contains(SECRET));
    let opened = huiliu_server::wechat_settings::open(&key, &app, &stored).unwrap();
    assert_eq!(
        (opened.secret.as_str(), opened.token.as_deref()),
        (SECRET, Some("huiliuToken1"))
    );
    assert!(
        huiliu_server::wechat_settings::open(&MasterKey::from_bytes([9; 32]), &app, &stored)
            .is_err()
    );
    store.close().await;
    if let Backend::Sqlite = backend {
        let file = std::fs::read(dir.path().join("cli.db")).unwrap();
        assert!(
            !file.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "no plaintext secret in the database file"
        );
    }

    // A bad value names its flag; a bad master key is refused.
    let output = set_wechat(
        dir.path(),
        &[
            "--app",
            &app_id,
            "--appid",
            "wx1",
            "--secret",
            SECRET,
            "--database-url",
            &url,
        ],
        &[("HUILIU_MASTER_KEY_FILE", key_file)],
        "",
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--appid"));
    let output = set_wechat(
        dir.path(),
        &[
            "--app",
            &app_id,
            "--appid",
            APPID,
            "--secret",
            SECRET,
            "--database-url",
            &url,
        ],
        &[("HUILIU_MASTER_KEY", "short")],
        "",
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("master_key"));
}

#[tokio::test]
async fn set_wechat_sqlite() {
    secrets_are_sealed_under_a_key_outside_the_database(Backend::Sqlite).await;
}

#[tokio::test]
async fn set_wechat_postgres() {
    secrets_are_sealed_under_a_key_outside_the_database(Backend::Postgres).await;
}

#[test]
fn the_master_key_is_redacted_from_the_printed_config() {
    let output = Command::new(env!("CARGO_BIN_EXE_huiliu"))
        .arg("config")
        .env("HUILIU_MASTER_KEY", "ab".repeat(32))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("master_key = \"***\"") && !printed.contains(&"ab".repeat(32)),
        "{printed}"
    );
}

#[tokio::test]
async fn dev_fake_wechat_serves_tokens_over_http() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_huiliu"))
        .args([
            "dev",
            "fake-wechat",
            "--listen",
            "127.0.0.1:0",
            "--appid",
            APPID,
            "--secret",
            SECRET,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first.rsplit(' ').next().unwrap().to_string();
    let _second = lines.next();
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/cgi-bin/stable_token"))
        .json(&serde_json::json!({"grant_type": "client_credential", "appid": APPID, "secret": SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["expires_in"], 7200, "{token}");
    child.kill().unwrap();
    child.wait().unwrap();
}
