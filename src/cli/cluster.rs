//! `herald cluster describe`: the live brokers and the controller.

use clap::Subcommand;

use super::output::{print_json, Table};
use super::{BrokerArgs, CliResult};

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// The live brokers and which of them is the controller, as the broker
    /// asked sees them.
    Describe {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

pub async fn run(command: ClusterCommand) -> CliResult {
    match command {
        ClusterCommand::Describe { json, broker } => {
            let described = broker.connect().await?.describe_cluster().await?;
            if json {
                return print_json(&described);
            }
            let controller = match described.controller_id {
                -1 => "none (an election is under way)".to_string(),
                id => format!("{id} (epoch {})", described.controller_epoch),
            };
            println!("mode: {}; controller: {controller}; answered by broker {}", described.mode, described.broker_id);
            let mut table = Table::new(&["ID", "HOST", "PORT", "RACK", "ROLE"]);
            for b in &described.brokers {
                let role = if b.id == described.controller_id { "controller" } else { "" };
                table.row(vec![
                    b.id.to_string(),
                    b.host.clone(),
                    b.port.to_string(),
                    b.rack.clone().unwrap_or_else(|| "-".into()),
                    role.into(),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}
