//! grpc.health.v1: the implemented services' statuses follow the database, probed every few
//! seconds while the server runs.

use std::time::Duration;

use assistd_store::Store;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Services that are implemented; their health follows the database.
const SERVED_SERVICES: [&str; 5] = [
    "assistd.preferences.v1.PreferencesService",
    "assistd.apikey.v1.UserApiKeyService",
    "assistd.chat.v1.ChatService",
    "assistd.auth.v1.AuthService",
    "assistd.gmail.v1.GmailService",
];

/// How often the health service re-checks the database.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// The status the database's answer implies.
async fn probe(store: &Store) -> ServingStatus {
    match store.ping().await {
        Ok(()) => ServingStatus::Serving,
        Err(err) => {
            tracing::warn!(error = %err, "database health probe failed");
            ServingStatus::NotServing
        }
    }
}

/// Sets the implemented services' statuses, then the overall one: a client that sees ""
/// SERVING can rely on every service's status being set.
async fn report(health: &HealthReporter, status: ServingStatus) {
    for service in SERVED_SERVICES {
        health.set_service_status(service, status).await;
    }
    health.set_service_status("", status).await;
}

/// Sets every status before the server accepts its first call, then keeps them current: the
/// overall status ("") and the implemented services follow the database.
pub(super) async fn start_health_probe(
    health: HealthReporter,
    store: Store,
    shutdown: CancellationToken,
) {
    let mut last = probe(&store).await;
    report(&health, last).await;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(HEALTH_PROBE_INTERVAL) => {}
            }
            let status = probe(&store).await;
            if status != last {
                report(&health, status).await;
                last = status;
            }
        }
    });
}
