//! Logs and traces: `tracing` to stderr as text or JSON, and, when switched on in the config,
//! OTLP trace export over HTTP/protobuf with the blocking client (async exporters panic when
//! spans end off the runtime, and drop spans silently). A process may pass a [`LineFilter`]
//! that rewrites every log line before it is written (the agent cuts secrets out of them).

use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The `[telemetry]` section of both configs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Filter in `RUST_LOG` syntax; `RUST_LOG` in the environment wins. Default `info`.
    #[serde(default)]
    pub log_filter: Option<String>,
    /// OTLP/HTTP traces endpoint, e.g. `http://collector:4318/v1/traces`. Off when absent.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

/// Flushes exported traces when dropped; keep it alive for the life of the process.
pub struct TelemetryGuard {
    tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("failed to flush traces: {err}");
        }
    }
}

/// Error setting up telemetry.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter: {0}")]
    Filter(String),
    #[error("cannot build OTLP exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Rewrites one formatted log line (an event, with its fields) before it is written.
pub type LineFilter = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Standard error, through an optional [`LineFilter`]. The fmt layer writes each event with one
/// `write_all` of the whole line, so the filter sees whole lines.
#[derive(Clone, Default)]
struct FilteredStderr {
    filter: Option<LineFilter>,
}

impl<'a> MakeWriter<'a> for FilteredStderr {
    type Writer = FilteredStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl io::Write for FilteredStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.filter {
            Some(filter) => {
                let line = filter(&String::from_utf8_lossy(buf));
                io::stderr().write_all(line.as_bytes())?;
                Ok(buf.len())
            }
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Installs the global subscriber for `service_name`.
pub fn init(service_name: &'static str, config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    init_filtered(service_name, config, None)
}

/// [`init`], with every log line passed through `line_filter` before it is written.
pub fn init_filtered(
    service_name: &'static str,
    config: &TelemetryConfig,
    line_filter: Option<LineFilter>,
) -> Result<TelemetryGuard, TelemetryError> {
    let level_filter = match std::env::var("RUST_LOG") {
        Ok(filter) => EnvFilter::try_new(filter),
        Err(_) => EnvFilter::try_new(config.log_filter.as_deref().unwrap_or("info")),
    }
    .map_err(|err| TelemetryError::Filter(err.to_string()))?;

    let (otel_layer, tracer_provider) = match &config.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry::trace::TracerProvider as _;
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .build()
                .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service_name)
                        .build(),
                )
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name));
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };

    let writer = FilteredStderr { filter: line_filter };
    let registry = tracing_subscriber::registry().with(level_filter).with(otel_layer);
    let result = match config.log_format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(writer))
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(writer))
            .try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { tracer_provider })
}
