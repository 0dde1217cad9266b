//! lattice-harness: the real wasmCloud 1.9.2 lattice parts in one test binary.
//!
//! * `host`    - a wasmCloud host (`wasmcloud-host` 0.27.1, the library of `wasmcloud` 1.9.2),
//!               configured like the `wasmcloud` binary does; prints `host started <host_id>`.
//! * `wadm`    - wadm 0.21.1 with its own command line (`wadm::config::WadmConfig`);
//!               prints `wadm started`.
//! * `secrets` - the secrets-nats-kv 0.2.0 backend: `run` (prints `secrets started <name>
//!               <server xkey>` once it answers), `put`, `add-mapping`, like its own CLI.
//! * `keys`    - a new server (host seed) or curve (xkey) key pair, as JSON.
//!
//! Logs go to stderr (`--log-level`, plus `RUST_LOG` directives; `--enable-structured-logging`
//! for JSON); stdout carries only the one "started" line, so tests can wait for it.
//! SIGINT/SIGTERM stop every subcommand cleanly (exit 0).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use clap::{Parser, Subcommand};
use nkeys::{KeyPair, XKey};
use tokio::io::AsyncWriteExt as _;
use wasmcloud_host::url::Url;
use wasmcloud_host::{OciConfig, WasmbusHost, WasmbusHostConfig};

#[derive(Parser)]
#[command(
    name = "lattice-harness",
    about = "Real wasmCloud 1.9.2 host, wadm 0.21.1 and secrets-nats-kv 0.2.0 for tests"
)]
struct Cli {
    /// Base log level (error, warn, info, debug, trace); RUST_LOG directives are added on top
    #[arg(long, global = true, env = "WASMCLOUD_LOG_LEVEL", default_value_t = tracing::Level::INFO)]
    log_level: tracing::Level,
    /// JSON logs (also passed to providers by the host)
    #[arg(long, global = true, env = "WASMCLOUD_STRUCTURED_LOGGING_ENABLED")]
    enable_structured_logging: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a wasmCloud 1.9.2 host
    Host(HostArgs),
    /// Run wadm 0.21.1 (all of wadm's own flags; e.g. `-s 127.0.0.1:4222`)
    Wadm(wadm::config::WadmConfig),
    /// The secrets-nats-kv 0.2.0 backend and its client commands
    #[command(subcommand)]
    Secrets(Secrets),
    /// Print a new key pair as JSON {"seed", "public"}: `server` (host seed SN..., id N...)
    /// or `curve` (xkey seed SX..., public X...)
    Keys {
        #[arg(value_parser = ["server", "curve"])]
        kind: String,
    },
}

/// The subset of the `wasmcloud` 1.9.2 flags that tests need (same names, env vars and defaults).
#[derive(clap::Args)]
struct HostArgs {
    /// NATS host, for both the control and the RPC connection
    #[arg(long, env = "WASMCLOUD_NATS_HOST", default_value = "127.0.0.1")]
    nats_host: String,
    /// NATS port
    #[arg(long, env = "WASMCLOUD_NATS_PORT", default_value_t = 4222)]
    nats_port: u16,
    /// A full NATS URL (nats://host:port), instead of --nats-host/--nats-port
    #[arg(long)]
    nats_url: Option<Url>,
    /// Lattice name ([A-Za-z0-9_-]+)
    #[arg(short = 'x', long, env = "WASMCLOUD_LATTICE", default_value = "default")]
    lattice: String,
    /// Server nkey seed (SN...); the host id is its public key. Random if absent
    #[arg(long, env = "WASMCLOUD_HOST_SEED")]
    host_seed: Option<String>,
    /// Allow file:// component and provider references
    #[arg(long, env = "WASMCLOUD_ALLOW_FILE_LOAD")]
    allow_file_load: bool,
    /// Allow OCI references tagged :latest
    #[arg(long, env = "WASMCLOUD_OCI_ALLOW_LATEST")]
    allow_latest: bool,
    /// OCI registries reachable over plain HTTP (host:port, comma separated)
    #[arg(long, env = "WASMCLOUD_OCI_ALLOWED_INSECURE", value_delimiter = ',')]
    allowed_insecure: Vec<String>,
    /// Subject prefix of the secrets backend (e.g. wasmcloud.secrets); secrets are off without it
    #[arg(long, env = "WASMCLOUD_SECRETS_TOPIC")]
    secrets_topic: Option<String>,
    /// Grace time for a provider's shutdown request before it is killed
    #[arg(long, env = "WASMCLOUD_PROV_SHUTDOWN_DELAY_MS", default_value_t = 300)]
    provider_shutdown_delay_ms: u64,
    /// Timeout of requests on the RPC connection (health checks, shutdown, HostData)
    #[arg(long, env = "WASMCLOUD_RPC_TIMEOUT_MS", default_value_t = 2000)]
    rpc_timeout_ms: u64,
    /// Heartbeat interval (host default: 30 s)
    #[arg(long, env = "WASMCLOUD_HEARTBEAT_INTERVAL")]
    heartbeat_interval_seconds: Option<u64>,
    /// JetStream domain
    #[arg(long, env = "WASMCLOUD_JS_DOMAIN")]
    js_domain: Option<String>,
    /// Host label key=value (repeatable)
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
    /// Version the host reports (ping, heartbeats); the real binary says 1.9.2
    #[arg(long, default_value = "1.9.2")]
    host_version: String,
}

#[derive(Subcommand)]
enum Secrets {
    /// Run the backend (like `secrets-nats-kv run`)
    Run(SecretsRun),
    /// Store a secret (like `secrets-nats-kv put`)
    Put(SecretsPut),
    /// Let a public key (e.g. a provider's `sub`) read secrets (like `secrets-nats-kv add-mapping`)
    AddMapping(SecretsMapping),
}

#[derive(clap::Args)]
struct SecretsNats {
    /// NATS address (host:port or URL)
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats_address: String,
    /// Subject prefix of the backend; the host's --secrets-topic must match
    #[arg(short, long, default_value = "wasmcloud.secrets")]
    subject_base: String,
}

#[derive(clap::Args)]
struct SecretsRun {
    /// Encryption xkey seed (SX...), encrypts secrets at rest
    #[arg(short, long, env = "ENCRYPTION_XKEY_SEED")]
    encryption_xkey_seed: String,
    /// Transit xkey seed (SX...), decrypts secrets sent to the backend
    #[arg(short, long, env = "TRANSIT_XKEY_SEED")]
    transit_xkey_seed: String,
    #[command(flatten)]
    nats: SecretsNats,
    /// Backend name (subject token)
    #[arg(short = 'n', long, default_value = "nats-kv")]
    name: String,
    /// KV bucket holding the secrets
    #[arg(short = 'b', long, default_value = "WASMCLOUD_SECRETS")]
    secrets_bucket: String,
    #[arg(long, default_value_t = 64)]
    max_secret_history: usize,
    #[arg(long, default_value = "wasmcloud_secrets")]
    nats_queue_base: String,
    #[arg(long, default_value = secrets_nats_kv::client::SECRETS_API_VERSION)]
    secrets_api_version: String,
}

#[derive(clap::Args)]
struct SecretsPut {
    /// Secret name
    name: String,
    /// Transit xkey seed of the backend (SX...)
    #[arg(short, long, env = "TRANSIT_XKEY_SEED")]
    transit_xkey_seed: String,
    #[command(flatten)]
    nats: SecretsNats,
    #[arg(long = "secret-version")]
    version: Option<String>,
    /// String value
    #[arg(
        long,
        env = "SECRET_STRING_VALUE",
        required_unless_present = "binary",
        conflicts_with = "binary"
    )]
    string: Option<String>,
    /// File holding a binary value
    #[arg(long, env = "SECRET_BINARY_FILE")]
    binary: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SecretsMapping {
    /// Public key allowed to read the secrets
    public_key: String,
    /// Secret name (repeatable, at least one)
    #[arg(long = "secret", required = true)]
    secrets: Vec<String>,
    #[command(flatten)]
    nats: SecretsNats,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json =
        cli.enable_structured_logging || matches!(&cli.command, Command::Wadm(w) if w.structured_logging);
    init_logging(cli.log_level, json);
    match cli.command {
        Command::Host(args) => run_host(args, cli.log_level, json).await,
        Command::Wadm(config) => run_wadm(config).await,
        Command::Secrets(Secrets::Run(args)) => secrets_run(args).await,
        Command::Secrets(Secrets::Put(args)) => secrets_put(args).await,
        Command::Secrets(Secrets::AddMapping(args)) => secrets_add_mapping(args).await,
        Command::Keys { kind } => {
            let (seed, public) = if kind == "server" {
                let key = KeyPair::new_server();
                (key.seed()?, key.public_key())
            } else {
                let key = XKey::new();
                (key.seed()?, key.public_key())
            };
            println!("{{\"seed\": \"{seed}\", \"public\": \"{public}\"}}");
            Ok(())
        }
    }
}

/// tracing to stderr: `level` for everything, then the RUST_LOG directives.
fn init_logging(level: tracing::Level, json: bool) {
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}

/// The one stdout line a test waits for, flushed at once.
async fn announce(line: String) -> anyhow::Result<()> {
    let mut out = tokio::io::stdout();
    out.write_all(format!("{line}\n").as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn terminated() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        sig = tokio::signal::ctrl_c() => sig.context("failed to wait for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

async fn run_host(args: HostArgs, log_level: tracing::Level, json: bool) -> anyhow::Result<()> {
    let url = match args.nats_url {
        Some(url) => url,
        None => Url::parse(&format!("nats://{}:{}", args.nats_host, args.nats_port))
            .context("invalid --nats-host/--nats-port")?,
    };
    // We make the key (rather than let the host do it) so we know the host id up front.
    let key = match &args.host_seed {
        Some(seed) => KeyPair::from_seed(seed).context("invalid --host-seed")?,
        None => KeyPair::new_server(),
    };
    let host_id = key.public_key();
    let mut labels = HashMap::new();
    for pair in &args.labels {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("label `{pair}` is not k=v"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let config = WasmbusHostConfig {
        ctl_nats_url: url.clone(),
        rpc_nats_url: url,
        lattice: Arc::from(args.lattice),
        host_key: Some(Arc::new(key)),
        allow_file_load: args.allow_file_load,
        oci_opts: OciConfig {
            allow_latest: args.allow_latest,
            allowed_insecure: args.allowed_insecure,
            ..Default::default()
        },
        secrets_topic_prefix: args.secrets_topic,
        provider_shutdown_delay: Some(Duration::from_millis(args.provider_shutdown_delay_ms)),
        rpc_timeout: Duration::from_millis(args.rpc_timeout_ms),
        heartbeat_interval: args.heartbeat_interval_seconds.map(Duration::from_secs),
        js_domain: args.js_domain,
        labels,
        log_level: wasmcloud_core::logging::Level::from(log_level),
        enable_structured_logging: json,
        version: args.host_version,
        ..Default::default()
    };
    // `new` returns once the host is subscribed and has published `host_started`.
    let (host, shutdown) = Box::pin(WasmbusHost::new(config))
        .await
        .context("failed to start host")?;
    announce(format!("host started {host_id}")).await?;
    // Stop on a signal, or on a control-interface `host.stop` (which may carry a deadline).
    let deadline = tokio::select! {
        res = terminated() => { res?; None }
        deadline = host.stopped() => deadline?,
    };
    drop(host);
    let deadline = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(10));
    tokio::time::timeout_at(deadline, shutdown)
        .await
        .context("host shutdown timed out")?
        .context("host shutdown failed")
}

async fn run_wadm(config: wadm::config::WadmConfig) -> anyhow::Result<()> {
    // start_wadm returns once its streams, buckets and consumers exist.
    let mut tasks = wadm::start_wadm(config).await.context("failed to start wadm")?;
    announce("wadm started".to_string()).await?;
    tokio::select! {
        res = terminated() => res,
        res = tasks.join_next() => match res {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(e.context("wadm failed")),
            Some(Err(e)) => Err(anyhow::Error::new(e).context("wadm task panicked")),
        },
    }
}

async fn connect(address: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name("lattice-harness-secrets")
        .connect(address)
        .await
        .with_context(|| format!("failed to connect to NATS at {address}"))
}

async fn secrets_run(args: SecretsRun) -> anyhow::Result<()> {
    let transit = XKey::from_seed(&args.transit_xkey_seed).context("invalid transit xkey seed")?;
    let encryption = XKey::from_seed(&args.encryption_xkey_seed).context("invalid encryption xkey seed")?;
    let client = connect(&args.nats.nats_address).await?;
    let api = secrets_nats_kv::Api::new(
        transit,
        encryption,
        client.clone(),
        args.nats.subject_base,
        args.name.clone(),
        args.secrets_bucket,
        args.max_secret_history,
        args.nats_queue_base,
        args.secrets_api_version,
    );
    let subject = format!("{}.server_xkey", api.subject());
    let mut backend = tokio::spawn(async move { api.run().await });
    // Ready = it answers `server_xkey` (run() subscribes, then creates its buckets, then serves).
    let xkey = tokio::select! {
        res = &mut backend => bail!("secrets backend exited early: {:?}", res),
        xkey = async {
            loop {
                match tokio::time::timeout(Duration::from_secs(1), client.request(subject.clone(), "".into())).await {
                    Ok(Ok(msg)) => break String::from_utf8_lossy(&msg.payload).to_string(),
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        } => xkey,
    };
    announce(format!("secrets started {} {xkey}", args.name)).await?;
    tokio::select! {
        res = terminated() => res,
        res = backend => res.context("secrets backend panicked")?.context("secrets backend failed"),
    }
}

async fn secrets_put(args: SecretsPut) -> anyhow::Result<()> {
    let transit = XKey::from_seed(&args.transit_xkey_seed).context("invalid transit xkey seed")?;
    let binary_secret = match &args.binary {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?)
        }
        None => None,
    };
    let client = connect(&args.nats.nats_address).await?;
    let request = secrets_nats_kv::PutSecretRequest {
        key: args.name.clone(),
        version: args.version.unwrap_or_default(),
        string_secret: args.string,
        binary_secret,
    };
    secrets_nats_kv::client::put_secret(&client, &args.nats.subject_base, &transit, request).await?;
    println!("Secret '{}' put successfully", args.name);
    Ok(())
}

async fn secrets_add_mapping(args: SecretsMapping) -> anyhow::Result<()> {
    ensure!(!args.secrets.is_empty(), "at least one --secret is needed");
    let client = connect(&args.nats.nats_address).await?;
    let secrets: HashSet<String> = args.secrets.iter().cloned().collect();
    secrets_nats_kv::client::add_mapping(&client, &args.nats.subject_base, &args.public_key, secrets).await?;
    println!(
        "Public key '{}' can now access secrets: {:?}",
        args.public_key, args.secrets
    );
    Ok(())
}
