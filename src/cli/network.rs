//! `xrun network …` (create, ls, inspect, rm, prune, connect, disconnect) and `xrun port`:
//! flags to the engine's network operations, results printed as Docker prints them.

use std::collections::BTreeMap;

use xrun::engine::{Engine, EngineError, network_json};
use xrun::network::CreateNetwork;
use xrun::runtime::RuntimeError;

use super::Global;
use super::run::engine_failure;

/// `xrun network` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON.
    Inspect(NamesArgs),
    /// Remove networks.
    #[command(alias = "remove")]
    Rm(NamesArgs),
    /// Remove every network no container uses.
    Prune(PruneArgs),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
}

/// `network create` arguments.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Subnet in CIDR notation (IPv4; default: the next free /24 of 10.90.0.0/16).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Gateway address (default: the subnet's first host).
    #[arg(long)]
    pub gateway: Option<String>,
    /// No outbound NAT, nothing forwarded into or out of the network.
    #[arg(long)]
    pub internal: bool,
    /// Driver (only bridge).
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// A label KEY=VALUE.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// The network's name.
    pub name: String,
}

/// `network ls` arguments.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Only print ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// `json`, or a template with {{.ID}} {{.Name}} {{.Driver}} {{.Scope}} {{.Subnet}}
    /// {{.Gateway}} {{.Internal}}.
    #[arg(long)]
    pub format: Option<String>,
}

/// Networks named.
#[derive(Debug, clap::Args)]
pub struct NamesArgs {
    /// Network names or ids.
    #[arg(required = true)]
    pub networks: Vec<String>,
}

/// `network prune` arguments.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Do not ask (xrun never asks; accepted for Docker's command lines).
    #[arg(short, long)]
    pub force: bool,
}

/// `network connect` arguments.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The container's IPv4 address on the network.
    #[arg(long)]
    pub ip: Option<String>,
    /// A network-scoped alias.
    #[arg(long = "alias")]
    pub alias: Vec<String>,
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
}

/// `network disconnect` arguments.
#[derive(Debug, clap::Args)]
pub struct DisconnectArgs {
    /// Accepted for Docker's command lines.
    #[arg(short, long)]
    pub force: bool,
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
}

/// `xrun port` arguments.
#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// The container.
    pub container: String,
    /// PORT[/PROTO] to show only that one.
    pub port: Option<String>,
}

fn invalid(m: String) -> EngineError {
    EngineError::Runtime(RuntimeError::BadInput(m))
}

/// `xrun network …`.
pub fn network(g: &Global, cmd: NetworkCommand) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    let r = match cmd {
        NetworkCommand::Create(a) => create(&engine, a),
        NetworkCommand::Ls(a) => ls(&engine, a),
        NetworkCommand::Inspect(a) => inspect(&engine, a),
        NetworkCommand::Rm(a) => rm(&engine, a),
        NetworkCommand::Prune(_) => engine.prune_networks().map(|names| {
            if !names.is_empty() {
                println!("Deleted Networks:");
                for n in names {
                    println!("{n}");
                }
            }
            0
        }),
        NetworkCommand::Connect(a) => connect(&engine, a),
        NetworkCommand::Disconnect(a) => engine.disconnect(&a.network, &a.container).map(|()| 0),
    };
    match r {
        Ok(code) => Ok(code),
        Err(e) => engine_failure(e),
    }
}

fn create(engine: &Engine, a: CreateArgs) -> Result<u8, EngineError> {
    if a.driver != "bridge" {
        return Err(invalid(format!(
            "network driver {:?} is not supported: use bridge",
            a.driver
        )));
    }
    let subnet = a
        .subnet
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(invalid)?;
    let gateway = match &a.gateway {
        Some(g) => Some(g.parse().map_err(|_| {
            invalid(format!(
                "invalid --gateway {g:?}: an IPv4 address is expected"
            ))
        })?),
        None => None,
    };
    let labels: BTreeMap<String, String> = a
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let def = engine.create_network(&CreateNetwork {
        name: a.name,
        subnet,
        gateway,
        internal: a.internal,
        labels,
    })?;
    println!("{}", def.id);
    Ok(0)
}

fn ls(engine: &Engine, a: LsArgs) -> Result<u8, EngineError> {
    let nets = engine.list_networks()?;
    if a.quiet {
        for n in &nets {
            println!("{}", &n.id[..12]);
        }
        return Ok(0);
    }
    match a.format.as_deref() {
        Some("json") => {
            for n in &nets {
                println!(
                    "{}",
                    serde_json::json!({"ID": &n.id[..12], "Name": n.name, "Driver": n.driver, "Scope": "local", "Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string(), "Internal": n.internal})
                );
            }
        }
        Some(t) => {
            for n in &nets {
                let line = t
                    .replace("{{.ID}}", &n.id[..12])
                    .replace("{{.Name}}", &n.name)
                    .replace("{{.Driver}}", &n.driver)
                    .replace("{{.Scope}}", "local")
                    .replace("{{.Subnet}}", &n.subnet.to_string())
                    .replace("{{.Gateway}}", &n.gateway.to_string())
                    .replace("{{.Internal}}", &n.internal.to_string())
                    .replace("\\t", "\t");
                println!("{line}");
            }
        }
        None => {
            println!("{:<14}{:<20}{:<10}SCOPE", "NETWORK ID", "NAME", "DRIVER");
            for n in &nets {
                println!("{:<14}{:<20}{:<10}local", &n.id[..12], n.name, n.driver);
            }
        }
    }
    Ok(0)
}

fn inspect(engine: &Engine, a: NamesArgs) -> Result<u8, EngineError> {
    let mut out = Vec::new();
    for n in &a.networks {
        out.push(network_json(&engine.inspect_network(n)?));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(std::io::Error::other)?
    );
    Ok(0)
}

fn rm(engine: &Engine, a: NamesArgs) -> Result<u8, EngineError> {
    let mut code = 0;
    for n in &a.networks {
        match engine.remove_network(n) {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("xrun: {}", e.to_string().replace('\n', " "));
                code = super::EXIT_XRUN_ERROR;
            }
        }
    }
    Ok(code)
}

fn connect(engine: &Engine, a: ConnectArgs) -> Result<u8, EngineError> {
    let ip = match &a.ip {
        Some(i) => Some(
            i.parse()
                .map_err(|_| invalid(format!("invalid --ip {i:?}: an IPv4 address is expected")))?,
        ),
        None => None,
    };
    engine.connect(&a.network, &a.container, ip, a.alias)?;
    Ok(0)
}

/// `xrun port`.
pub fn port(g: &Global, a: PortArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    let ports = match engine.ports(&a.container) {
        Ok(p) => p,
        Err(e) => return engine_failure(e),
    };
    let want = a.port.as_deref().map(|p| match p.split_once('/') {
        Some((n, proto)) => (n.to_string(), proto.to_string()),
        None => (p.to_string(), "tcp".to_string()),
    });
    let mut shown = 0;
    for p in &ports {
        match &want {
            Some((n, proto)) => {
                if p.container_port.to_string() == *n && p.protocol.as_str() == proto {
                    println!("{}:{}", p.host_ip, p.host_port);
                    shown += 1;
                }
            }
            None => {
                println!("{p}");
                shown += 1;
            }
        }
    }
    if let (Some((n, proto)), 0) = (&want, shown) {
        eprintln!(
            "xrun: no public port '{n}/{proto}' published for {}",
            a.container
        );
        return Ok(super::EXIT_XRUN_ERROR);
    }
    Ok(0)
}
