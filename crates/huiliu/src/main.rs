//! The `huiliu` command: server, migrations, apps, imports and probes.
#![forbid(unsafe_code)]

mod config;
mod demo;
mod import;
mod master_key;
mod simulate;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use config::{Config, Overrides};
use huiliu_domain::apps::{AppId, NewApp};
use huiliu_domain::time::{AppTimeZone, DEFAULT_TIMEZONE};
use huiliu_server::AnyStore;
use huiliu_store::Store;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "huiliu",
    version,
    about = "huiliu (回流): growth and retention for WeChat mini-programs"
)]
struct Cli {
    /// A TOML config file (default: $HUILIU_CONFIG, else ./huiliu.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct StoreArgs {
    /// sqlite://PATH (created if missing) or postgres://USER@HOST/DB [env: HUILIU_DATABASE_URL; default sqlite://huiliu.db]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (and metrics), applying pending migrations first.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// API listen address [env: HUILIU_LISTEN; default 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Metrics listen address; port 0 picks one, `off` disables [env: HUILIU_METRICS_LISTEN; default 127.0.0.1:9464]
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Create and list apps (tenants).
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Import historical events from a JSONL or CSV file.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// The app the events belong to.
        #[arg(long = "app", value_name = "APP_ID")]
        app_id: String,
        /// `jsonl` or `csv`; by default taken from the file extension (.csv is CSV, anything else JSONL).
        #[arg(long)]
        format: Option<import::FileFormat>,
        /// Where to write rejected lines (default: FILE.rejects.jsonl, only if there are any).
        #[arg(long, value_name = "PATH")]
        rejects: Option<PathBuf>,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
        /// The file to import.
        file: PathBuf,
    },
    /// Rebuild an app's activity index from its raw events (after changing which
    /// events count as activity, or to repair it). Ingest may continue meanwhile.
    Reindex {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long = "app", value_name = "APP_ID")]
        app_id: String,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Simulate a mini-program's users: write JSONL for `huiliu import`, or with
    /// --app store the events straight into that app.
    Simulate {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        simulation: simulate::SimulateArgs,
        /// Store into this app (in its time zone) instead of writing a file.
        #[arg(
            long = "app",
            value_name = "APP_ID",
            conflicts_with = "output",
            required_unless_present = "output"
        )]
        app_id: Option<String>,
        /// Write JSONL here.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Time zone of a JSONL file's days and rhythms (with --output).
        #[arg(long, default_value = DEFAULT_TIMEZONE)]
        timezone: String,
        /// Hide the progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Create (or reuse) a demo app with simulated history on the embedded store,
    /// then serve it: prints the URL and the demo app's API key.
    Demo {
        /// The demo's own database [default: sqlite://huiliu-demo.db]
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// API listen address [env: HUILIU_LISTEN; default 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        #[command(flatten)]
        demo: demo::DemoArgs,
    },
    /// Development tools.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
    /// Exit 0 when a running server reports ready, 1 otherwise (for container health checks).
    Healthcheck {
        /// The server's base URL (default: http:// + the configured listen address).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the effective configuration with secrets redacted.
    Config,
}

#[derive(Subcommand)]
enum DevCommand {
    /// Run a fake WeChat API server (tokens, template list, subscription sends with
    /// WeChat's errcodes) for one mini-program; drive it over /fake/* (docs/wechat.md).
    FakeWechat {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        #[arg(long, default_value = "wx00000000000000aa")]
        appid: String,
        #[arg(long, default_value = "0123456789abcdef0123456789abcdef")]
        secret: String,
        /// Seconds a token lives (WeChat: 7200).
        #[arg(long, default_value_t = 7200)]
        token_lifetime: u64,
    },
}

#[derive(Subcommand)]
enum AppCommand {
    /// Create an app and print its id and keys (shown only this once).
    Create {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        name: String,
        /// IANA time zone for day boundaries and reports.
        #[arg(long, default_value = DEFAULT_TIMEZONE)]
        timezone: String,
    },
    /// Set an app's WeChat settings; the AppSecret, Token and EncodingAESKey are
    /// stored sealed under the master key (see docs/operations.md).
    SetWechat {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long = "app", value_name = "APP_ID")]
        app_id: String,
        /// The mini-program's AppID (wx…).
        #[arg(long)]
        appid: String,
        /// The AppSecret; `-` reads it from standard input (keeps it out of shell history).
        #[arg(long)]
        secret: String,
        /// The message-push Token.
        #[arg(long)]
        token: Option<String>,
        /// The message-push EncodingAESKey.
        #[arg(long = "aes-key")]
        aes_key: Option<String>,
        /// This app's WeChat API base, if not the server's.
        #[arg(long = "api-base")]
        api_base: Option<String>,
    },
    /// List apps (ids, names, time zones; never keys).
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let overrides = match &cli.command {
        Command::Serve {
            store,
            listen,
            metrics_listen,
        } => Overrides {
            database_url: store.database_url.clone(),
            listen: listen.clone(),
            metrics_listen: metrics_listen.clone(),
        },
        Command::Demo {
            database_url,
            listen,
            ..
        } => Overrides {
            database_url: Some(
                database_url
                    .clone()
                    .unwrap_or_else(|| demo::DEFAULT_DATABASE_URL.to_string()),
            ),
            listen: listen.clone(),
            metrics_listen: Some("off".to_string()),
        },
        Command::Migrate { store }
        | Command::Import { store, .. }
        | Command::Reindex { store, .. }
        | Command::Simulate { store, .. }
        | Command::App {
            command:
                AppCommand::Create { store, .. }
                | AppCommand::List { store, .. }
                | AppCommand::SetWechat { store, .. },
        } => Overrides {
            database_url: store.database_url.clone(),
            ..Overrides::default()
        },
        Command::Healthcheck { .. } | Command::Config | Command::Dev { .. } => Overrides::default(),
    };
    let (config, warnings) =
        config::load(cli.config.clone(), overrides).context("reading the configuration")?;
    init_logging(&config)?;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }

    match cli.command {
        Command::Serve { .. } => serve(&config).await?,
        Command::Migrate { .. } => {
            let store = open(&config).await?;
            store.close().await;
            eprintln!("migrations applied to the {} store", store.backend());
        }
        Command::App {
            command: AppCommand::Create { name, timezone, .. },
        } => {
            let zone = AppTimeZone::parse(&timezone)
                .map_err(|e| anyhow::anyhow!("--timezone: {}", e.message))?;
            let plan = NewApp::generate(&name, zone, &mut rand::rng())
                .map_err(|e| anyhow::anyhow!("--name: {}", e.message))?;
            let store = open(&config).await?;
            let app = store.create_app(&plan).await?;
            store.close().await;
            println!(
                "{}",
                serde_json::json!({
                    "app_id": app.id.as_str(),
                    "secret_key": plan.secret_key.plaintext,
                    "publishable_key": plan.publishable_key.plaintext,
                })
            );
        }
        Command::App {
            command: AppCommand::List { json, .. },
        } => {
            let store = open(&config).await?;
            let apps = store.list_apps().await?;
            store.close().await;
            if !json {
                println!("{:<21} {:<20} {:<33} NAME", "APP_ID", "TIMEZONE", "CREATED");
            }
            for app in apps {
                let created = app.timezone.format_rfc3339(app.created_at);
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"app_id": app.id.as_str(), "name": app.name, "timezone": app.timezone.name(), "created_at": created})
                    );
                } else {
                    println!(
                        "{:<21} {:<20} {:<33} {}",
                        app.id,
                        app.timezone.name(),
                        created,
                        app.name
                    );
                }
            }
        }
        Command::Import {
            app_id,
            format,
            rejects,
            quiet,
            file,
            ..
        } => {
            let store = open(&config).await?;
            let app = find_app(&store, &app_id).await?;
            let summary = import::run(&store, &app, &file, format, rejects, !quiet).await;
            // Merge the import's index rows now, so the first report does not read them one by one.
            let compacted = huiliu_server::analytics::compact_app(&store, &app).await;
            store.close().await;
            compacted?;
            let summary = summary?;
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::App {
            command:
                AppCommand::SetWechat {
                    app_id,
                    appid,
                    secret,
                    token,
                    aes_key,
                    api_base,
                    ..
                },
        } => {
            let secret = if secret == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim().to_string()
            } else {
                secret
            };
            let settings =
                huiliu_domain::wechat::WechatSettings::new(appid, secret, token, aes_key, api_base)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "--{}: {}",
                            e.field.unwrap_or_default().replace('_', "-"),
                            e.message
                        )
                    })?;
            let key = master_key::load(&config)?;
            let store = open(&config).await?;
            let app = find_app(&store, &app_id).await?;
            let stored = huiliu_server::wechat_settings::seal(&key, &app, &settings);
            let result = store.put_wechat_settings(&app, &stored).await;
            store.close().await;
            result?;
            println!(
                "{}",
                serde_json::json!({
                    "app_id": app.id.as_str(),
                    "appid": stored.appid,
                    "secret_set": true,
                    "token_set": stored.token_sealed.is_some(),
                    "aes_key_set": stored.aes_key_sealed.is_some(),
                    "api_base": stored.api_base,
                })
            );
        }
        Command::Reindex { app_id, quiet, .. } => {
            let store = open(&config).await?;
            let app = find_app(&store, &app_id).await?;
            let progress = if quiet {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new_spinner()
            };
            let report = huiliu_server::analytics::rebuild_index(&store, &app, |events| {
                progress.set_message(format!("{events} events read"));
                progress.tick();
            })
            .await;
            progress.finish_and_clear();
            store.close().await;
            println!("{}", serde_json::to_string(&report?)?);
        }
        Command::Simulate {
            simulation,
            app_id,
            output,
            timezone,
            quiet,
            ..
        } => {
            let summary = match (app_id, output) {
                (Some(app_id), _) => {
                    let store = open(&config).await?;
                    let app = find_app(&store, &app_id).await?;
                    let summary = simulate::into_store(&store, &app, &simulation, !quiet).await;
                    let compacted = huiliu_server::analytics::compact_app(&store, &app).await;
                    store.close().await;
                    compacted?;
                    summary?
                }
                (None, Some(path)) => {
                    let zone = AppTimeZone::parse(&timezone)
                        .map_err(|e| anyhow::anyhow!("--timezone: {}", e.message))?;
                    let show = !quiet;
                    tokio::task::spawn_blocking(move || {
                        simulate::to_file(&simulation, zone.zone(), &path, show)
                    })
                    .await??
                }
                (None, None) => bail!("give --app APP_ID or --output FILE"),
            };
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Demo { demo, .. } => {
            let store = open(&config).await?;
            demo::run(&config, store, demo).await?;
        }
        Command::Dev {
            command:
                DevCommand::FakeWechat {
                    listen,
                    appid,
                    secret,
                    token_lifetime,
                },
        } => {
            let policy = huiliu_wechat::fake::TokenPolicy {
                lifetime: std::time::Duration::from_secs(token_lifetime),
                ..Default::default()
            };
            let fake = huiliu_wechat::fake::FakeWechat::start(&listen, &appid, &secret, policy)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            println!("fake WeChat for {appid}: {}", fake.base_url());
            println!(
                "point huiliu at it: HUILIU_WECHAT_API_BASE={}",
                fake.base_url()
            );
            tokio::signal::ctrl_c().await?;
        }
        Command::Healthcheck { url } => {
            let base = url.unwrap_or_else(|| format!("http://{}", config.listen));
            return Ok(healthcheck(&base).await);
        }
        Command::Config => print!("{}", config::redacted_toml(&config)),
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("log filter {:?}", config.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format.as_str() {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => bail!("log_format must be `text` or `json`, not {other:?}"),
    }
    Ok(())
}

/// The app named by `--app`, or an error a user can act on.
async fn find_app(store: &AnyStore, app_id: &str) -> anyhow::Result<huiliu_store::AppRecord> {
    let app_id = AppId::parse(app_id).map_err(|e| anyhow::anyhow!("--app: {}", e.message))?;
    match store.find_app(&app_id).await? {
        Some(app) => Ok(app),
        None => bail!("--app: no app {app_id} in this database (see `huiliu app list`)"),
    }
}

async fn open(config: &Config) -> anyhow::Result<AnyStore> {
    let backend = huiliu_server::backend_of(&config.database_url)?;
    let store = huiliu_server::open_store(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the {backend} store at {}",
                config::redact_url_password(&config.database_url)
            )
        })?;
    Ok(store)
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let key = master_key::load(config)?;
    let store = open(config).await?;
    let mut state = huiliu_server::AppState::new(store);
    state.master_key = std::sync::Arc::new(key);
    configure_sending(config, &mut state)?;
    serve_state(config, state, |_| {}).await
}

/// WeChat and dispatch settings from the configuration.
fn configure_sending(config: &Config, state: &mut huiliu_server::AppState) -> anyhow::Result<()> {
    state.wechat_api_base = config.wechat_api_base.clone();
    let dispatch = &mut state.dispatch;
    dispatch.enabled = match config.dispatch.as_str() {
        "on" => true,
        "off" => false,
        other => anyhow::bail!("dispatch must be on or off, not {other:?}"),
    };
    dispatch.token_api = huiliu_server::wechat_token::TokenApi::parse(&config.wechat_token_api)
        .with_context(|| {
            format!(
                "wechat_token_api must be stable or classic, not {:?}",
                config.wechat_token_api
            )
        })?;
    if let Some(node_id) = &config.node_id {
        anyhow::ensure!(
            !node_id.is_empty() && node_id.len() <= 64,
            "node_id must be 1–64 characters"
        );
        dispatch.node_id = node_id.clone();
    }
    anyhow::ensure!(
        (1..=3600).contains(&config.dispatch_lease_seconds),
        "dispatch_lease_seconds must be 1–3600"
    );
    anyhow::ensure!(
        (1..=86_400).contains(&config.dispatch_reconcile_seconds),
        "dispatch_reconcile_seconds must be 1–86400"
    );
    dispatch.lease = std::time::Duration::from_secs(config.dispatch_lease_seconds);
    dispatch.reconcile = std::time::Duration::from_secs(config.dispatch_reconcile_seconds);
    anyhow::ensure!(
        (1..=86_400).contains(&config.points_sweep_seconds),
        "points_sweep_seconds must be 1–86400"
    );
    state.points_sweep_every = std::time::Duration::from_secs(config.points_sweep_seconds);
    Ok(())
}

/// Binds the configured listeners and serves until SIGTERM or Ctrl-C;
/// `listening` learns the API's address once it is bound.
async fn serve_state(
    config: &Config,
    state: huiliu_server::AppState,
    listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let store = state.store.clone();
    let api = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let metrics = match config.metrics_listen.as_str() {
        "off" => None,
        addr => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?,
        ),
    };
    tracing::info!(
        api = %api.local_addr()?,
        metrics = %metrics.as_ref().map_or("off".to_string(), |m| m.local_addr().map(|a| a.to_string()).unwrap_or_default()),
        store = store.backend(),
        "huiliu is serving"
    );
    listening(api.local_addr()?);
    let shutdown = CancellationToken::new();
    tokio::spawn(huiliu_server::cancel_on_signal(shutdown.clone()));
    huiliu_server::serve_with(state, api, metrics, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn healthcheck(base: &str) -> ExitCode {
    let url = format!("{}/readyz", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("a plain HTTP client builds");
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => {
            println!("ready: {url}");
            ExitCode::SUCCESS
        }
        Ok(response) => {
            eprintln!("not ready: {url} answered {}", response.status());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("not ready: {url}: {error}");
            ExitCode::FAILURE
        }
    }
}
