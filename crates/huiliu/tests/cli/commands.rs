use crate::{create_app, huiliu};

#[test]
fn app_create_prints_keys_once_and_app_list_never_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("apps.db").display());
    let (app_id, secret, publishable) = create_app(&url, "回流商城");
    assert!(
        app_id.starts_with("app_")
            && secret.starts_with("hl_sk_")
            && publishable.starts_with("hl_pk_")
    );
    let listed = huiliu(&["app", "list", "--json", "--database-url", &url]);
    let text = String::from_utf8(listed.stdout).unwrap();
    let row: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(row["app_id"], app_id.as_str());
    assert_eq!(row["name"], "回流商城");
    assert_eq!(row["timezone"], "Asia/Shanghai");
    assert!(
        !text.contains(&secret[6..]) && !text.contains(&publishable[6..]),
        "keys leaked: {text}"
    );
    let db = std::fs::read(dir.path().join("apps.db")).unwrap();
    let secret_part = secret.rsplit('_').next().unwrap().as_bytes();
    assert!(
        !db.windows(secret_part.len()).any(|w| w == secret_part),
        "the key is stored in plain text"
    );
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let bad_zone = huiliu(&[
        "app",
        "create",
        "--name",
        "x",
        "--timezone",
        "Mars/Olympus",
        "--database-url",
        &url,
    ]);
    assert!(!bad_zone.status.success());
    assert!(String::from_utf8_lossy(&bad_zone.stderr).contains("IANA"));
    let bad_url = huiliu(&["migrate", "--database-url", "mysql://root@localhost/x"]);
    assert!(!bad_url.status.success());
    let message = String::from_utf8_lossy(&bad_url.stderr);
    assert!(
        message.contains("sqlite://PATH") && message.contains("postgres://"),
        "{message}"
    );
}

#[test]
fn config_layers_and_redaction_show_in_the_printed_config() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huiliu.toml");
    std::fs::write(
        &file,
        "database_url = \"postgres://huiliu:hunter2@db/huiliu\"\nlisten = \"0.0.0.0:9000\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_huiliu"))
        .args(["config", "--config", file.to_str().unwrap()])
        .env("HUILIU_LISTEN", "127.0.0.1:7000")
        .env("HUILIU_LSTEN", "typo")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("postgres://huiliu:***@db/huiliu"),
        "{printed}"
    );
    assert!(!printed.contains("hunter2"));
    assert!(
        printed.contains("listen = \"127.0.0.1:7000\""),
        "env beats the file: {printed}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("HUILIU_LSTEN"));
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = huiliu(&["healthcheck", "--url", &format!("http://127.0.0.1:{port}")]);
    assert!(!output.status.success());
}
