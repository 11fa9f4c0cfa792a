//! The `sluice` command line: parses arguments and hands over to the library.

use clap::{Parser, Subcommand};
use sluice::config::{ConfigSources, Settings};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Turns full-snapshot lab exports into a durable, delivered stream of changes"
)]
struct Cli {
    /// Configuration file, merged over the built-in defaults (environment variables SLUICE_<SECTION>__<KEY> win).
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline as a long-running service.
    Run,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration and print it (secrets hidden).
    CheckConfig,
    /// Generate a synthetic ECLRS snapshot.
    Gen(sluice::gen::GenArgs),
    /// Run everything on embedded defaults: PostgreSQL, generated snapshots, delivery; print a summary.
    Demo(sluice::demo::DemoArgs),
    /// Run the built-in fake contact-tracing API (webhook and CommCare endpoints, fault injection).
    FakeApi(sluice::fake_api::FakeApiArgs),
    /// Summarise a running instance from its admin server: actors, last snapshots, deliveries, paused sinks.
    Status(sluice::status::StatusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Panics are reported by location (and literal message) only: a formatted message may hold a field value.
    sluice::supervisor::install_panic_hook(true);
    // The demo and status print their own output; their logs are for problems only unless asked for.
    sluice::telemetry::init_logging(
        if matches!(cli.command, Command::Demo(_) | Command::Status(_)) {
            "warn"
        } else {
            "info"
        },
    );
    let sources = ConfigSources {
        file: cli.config.clone(),
        overrides: None,
        env: true,
    };
    let result = match cli.command {
        Command::Gen(args) => sluice::gen::generate(&args).map(|s| {
            println!(
                "wrote {} rows to {} (ground truth: {})",
                s.rows,
                s.path.display(),
                s.truth_path.display()
            );
        }),
        Command::CheckConfig => Settings::load(&sources)
            .map(|s| println!("configuration is valid\n{s:#?}"))
            .map_err(Into::into),
        Command::Migrate => {
            load(&sources).and_then(|s| actix_rt::System::new().block_on(sluice::cli::migrate(s)))
        }
        Command::Run => {
            load(&sources).and_then(|s| actix_rt::System::new().block_on(sluice::cli::run(s)))
        }
        Command::Demo(args) => actix_rt::System::new().block_on(sluice::demo::run(args, sources)),
        Command::FakeApi(args) => {
            current_thread().and_then(|rt| rt.block_on(sluice::fake_api::serve_forever(args)))
        }
        Command::Status(args) => args
            .admin
            .map_or_else(
                || load(&sources).map(|s| sluice::status::admin_url(s.admin.listen)),
                Ok,
            )
            .and_then(|url| current_thread().and_then(|rt| rt.block_on(sluice::status::run(&url)))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn load(sources: &ConfigSources) -> anyhow::Result<Settings> {
    Ok(Settings::load(sources)?)
}
