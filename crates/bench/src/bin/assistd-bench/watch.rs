//! Watch propagation: how long an `UpdatePreferences` takes to arrive on a `WatchPreferences`
//! stream opened on another connection.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use assistd::proto::preferences::v1::preferences_service_client::PreferencesServiceClient;
use assistd::proto::preferences::v1::{
    Preferences, Theme, UpdatePreferencesRequest, WatchPreferencesRequest,
};
use assistd_bench::cli::{authed, connect};
use tonic::metadata::AsciiMetadataValue;

/// How long one watch sample may take before the bench gives up.
const WATCH_SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Delays from just before each UpdatePreferences is sent until a WatchPreferences stream on
/// another connection yields the new theme.
pub(crate) async fn measure_watch(
    address: &str,
    token: &AsciiMetadataValue,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    // Separate connections, so the event really crosses the server instead of riding back
    // on the connection that made the change.
    let mut watcher = PreferencesServiceClient::new(connect(address, CONNECT_TIMEOUT).await?);
    let mut updater = PreferencesServiceClient::new(connect(address, CONNECT_TIMEOUT).await?);
    let mut stream = watcher
        .watch_preferences(authed(WatchPreferencesRequest {}, token))
        .await
        .context("opening WatchPreferences")?
        .into_inner();
    let first = tokio::time::timeout(WATCH_SAMPLE_TIMEOUT, stream.message())
        .await
        .context("WatchPreferences sent no initial state")?
        .context("reading the initial WatchPreferences event")?
        .context("WatchPreferences ended before its initial state")?;
    let mut theme = first.preferences.map_or(Theme::Unspecified, |p| p.theme());

    let mut delays = Vec::with_capacity(samples);
    for sample in 0..samples {
        // Always a real change, so every update produces an event.
        let target = if theme == Theme::Light {
            Theme::Dark
        } else {
            Theme::Light
        };
        let request = authed(
            UpdatePreferencesRequest {
                preferences: Some(Preferences {
                    theme: target.into(),
                    ..Preferences::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["theme".to_owned()],
                }),
                etag: String::new(),
            },
            token,
        );
        let started = Instant::now();
        let update = updater.update_preferences(request);
        // Read the stream while the update is in flight: the event may arrive before the
        // update's own response does.
        let seen = async {
            loop {
                let event = stream
                    .message()
                    .await
                    .context("reading WatchPreferences")?
                    .context("WatchPreferences ended")?;
                if event.preferences.is_some_and(|p| p.theme() == target) {
                    return anyhow::Ok(Instant::now());
                }
            }
        };
        let (updated, seen) =
            tokio::time::timeout(WATCH_SAMPLE_TIMEOUT, async { tokio::join!(update, seen) })
                .await
                .with_context(|| {
                    format!(
                        "sample {sample}: the change did not arrive within {WATCH_SAMPLE_TIMEOUT:?}"
                    )
                })?;
        updated.with_context(|| format!("sample {sample}: UpdatePreferences"))?;
        delays.push(seen?.duration_since(started));
        theme = target;
    }
    Ok(delays)
}
