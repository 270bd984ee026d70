//! `herald quota set|remove|list`: the rates a principal or client id may use
//! (docs/security.md, "Quotas").

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use herald::protocol::QuotaRates;

use super::output::{print_json, Table};
use super::{BrokerArgs, CliResult, UsageError};

#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Set rates of a principal or client id (the others stay as they are).
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        /// Produce request bytes per second (0: no limit).
        #[arg(long)]
        producer_byte_rate: Option<u64>,
        /// Fetched bytes per second (0: no limit).
        #[arg(long)]
        consumer_byte_rate: Option<u64>,
        /// Requests per second (0: no limit).
        #[arg(long)]
        request_rate: Option<u64>,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Remove rates of a principal or client id: back to the defaults (all
    /// of its rates unless some are named).
    Remove {
        #[command(flatten)]
        entity: EntityArgs,
        /// Only these: producer_byte_rate, consumer_byte_rate, request_rate (repeatable).
        #[arg(long = "rate")]
        rates: Vec<String>,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// The default rates and every override.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

/// Whom: `user alice` (the principal `User:alice`) or `client-id batch-job`.
#[derive(Args, Debug, Clone)]
pub struct EntityArgs {
    /// `user` (a principal, by its name) or `client-id`.
    #[arg(value_enum)]
    entity_type: EntityType,
    /// The principal's name (`alice` for `User:alice`) or the client id.
    entity_name: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum EntityType {
    User,
    ClientId,
}

impl EntityArgs {
    fn entity(&self) -> (&'static str, String) {
        let kind = match self.entity_type {
            EntityType::User => "user",
            EntityType::ClientId => "client_id",
        };
        (kind, self.entity_name.clone())
    }
}

const RATES: [&str; 3] = ["producer_byte_rate", "consumer_byte_rate", "request_rate"];

pub async fn run(command: QuotaCommand) -> CliResult {
    match command {
        QuotaCommand::Set { entity, producer_byte_rate, consumer_byte_rate, request_rate, broker } => {
            let set: BTreeMap<String, u64> = RATES
                .iter()
                .zip([producer_byte_rate, consumer_byte_rate, request_rate])
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                .collect();
            if set.is_empty() {
                return Err(UsageError("set needs at least one rate".into()).into());
            }
            let (kind, name) = entity.entity();
            broker.connect().await?.alter_quotas(kind, &name, set, Vec::new()).await?;
            println!("set the quotas of {kind} {name}");
        }
        QuotaCommand::Remove { entity, rates, broker } => {
            let remove = if rates.is_empty() { RATES.iter().map(|r| r.to_string()).collect() } else { rates };
            let (kind, name) = entity.entity();
            broker.connect().await?.alter_quotas(kind, &name, BTreeMap::new(), remove).await?;
            println!("removed quotas of {kind} {name}");
        }
        QuotaCommand::List { json, broker } => {
            let described = broker.connect().await?.describe_quotas().await?;
            if json {
                return print_json(&described);
            }
            let shown = |rate: Option<u64>| rate.map_or_else(|| "-".to_string(), |r| r.to_string());
            let row = |kind: &str, name: &str, r: &QuotaRates| {
                vec![
                    kind.to_string(),
                    name.to_string(),
                    shown(r.producer_byte_rate),
                    shown(r.consumer_byte_rate),
                    shown(r.request_rate),
                ]
            };
            let mut table = Table::new(&["ENTITY", "NAME", "PRODUCER_BYTE_RATE", "CONSUMER_BYTE_RATE", "REQUEST_RATE"]);
            table.row(row("default", "-", &described.defaults));
            for q in &described.quotas {
                table.row(row(&q.entity_type, &q.entity_name, &q.rates));
            }
            table.print();
        }
    }
    Ok(())
}
