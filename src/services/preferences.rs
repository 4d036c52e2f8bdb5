//! PreferencesService: proto <-> domain conversion and the RPC handlers.

use std::pin::Pin;

use assistd_core::PreferencesService;
use assistd_domain::preferences::{
    self, LANGUAGES, Language, Preferences, PreferencesUpdate, Theme,
};
use assistd_domain::{FieldViolation, UserId};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::invalid;
use crate::bearer::caller;
use crate::paging::{Cursor, PageLimits, PageRequest};
use crate::proto::preferences::v1 as pb;
use crate::status::status;

/// Paths `UpdatePreferencesRequest.update_mask` may name.
const UPDATABLE_PATHS: [&str; 4] = ["theme", "language", "timezone", "default_model"];
/// Default and largest `ListTimezonesRequest.page_size`.
const TIMEZONE_PAGES: PageLimits = PageLimits {
    default: 100,
    max: 1000,
};

/// Where ListTimezones resumes: after this zone name (names are listed in order).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct TimezoneCursor {
    after: String,
}

impl Cursor for TimezoneCursor {
    const LIST: &'static str = "preferences.timezones";
    const RPC: &'static str = "ListTimezones";
}

/// The gRPC face of [`PreferencesService`].
#[derive(Clone, Debug)]
pub struct PreferencesApi {
    service: PreferencesService,
    shutdown: CancellationToken,
}

impl PreferencesApi {
    /// Serves `service`; watch streams end when `shutdown` fires.
    #[must_use]
    pub fn new(service: PreferencesService, shutdown: CancellationToken) -> Self {
        Self { service, shutdown }
    }
}

fn theme_to_proto(theme: Theme) -> pb::Theme {
    match theme {
        Theme::Light => pb::Theme::Light,
        Theme::Dark => pb::Theme::Dark,
        Theme::System => pb::Theme::System,
    }
}

fn to_proto(preferences: &Preferences) -> pb::Preferences {
    pb::Preferences {
        theme: theme_to_proto(preferences.theme).into(),
        language: preferences.language.tag.to_owned(),
        timezone: preferences.timezone.name().to_owned(),
        default_model: preferences.default_model.clone().unwrap_or_default(),
        etag: preferences.etag(),
        update_time: preferences.updated_at.map(super::timestamp),
    }
}

/// A validated update: what to change and the version it must apply to.
#[derive(Debug)]
struct ValidUpdate {
    update: PreferencesUpdate,
    expected_version: Option<i64>,
}

impl TryFrom<pb::UpdatePreferencesRequest> for ValidUpdate {
    type Error = Vec<FieldViolation>;

    fn try_from(request: pb::UpdatePreferencesRequest) -> Result<Self, Self::Error> {
        let mut violations = Vec::new();
        let mut update = PreferencesUpdate::default();
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            violations.push(FieldViolation::new(
                "update_mask",
                format!(
                    "name at least one field to change: {}",
                    UPDATABLE_PATHS.join(", ")
                ),
            ));
        }
        if request.preferences.is_none() && !paths.is_empty() {
            violations.push(FieldViolation::new(
                "preferences",
                "required: carries the new values of the fields update_mask names",
            ));
        }
        let values = request.preferences.unwrap_or_default();
        for path in &paths {
            match path.as_str() {
                "theme" => match pb::Theme::try_from(values.theme) {
                    Ok(pb::Theme::Light) => update.theme = Some(Theme::Light),
                    Ok(pb::Theme::Dark) => update.theme = Some(Theme::Dark),
                    Ok(pb::Theme::System) => update.theme = Some(Theme::System),
                    Ok(pb::Theme::Unspecified) | Err(_) => violations.push(FieldViolation::new(
                        "preferences.theme",
                        "choose THEME_LIGHT, THEME_DARK or THEME_SYSTEM",
                    )),
                },
                "language" => match Language::parse(&values.language) {
                    Ok(language) => update.language = Some(language),
                    Err(err) => violations.push(err.at("preferences.language")),
                },
                "timezone" => match preferences::parse_timezone(&values.timezone) {
                    Ok(timezone) => update.timezone = Some(timezone),
                    Err(err) => violations.push(err.at("preferences.timezone")),
                },
                "default_model" if values.default_model.is_empty() => {
                    update.default_model = Some(None);
                }
                "default_model" => match preferences::parse_model_name(&values.default_model) {
                    Ok(model) => update.default_model = Some(Some(model)),
                    Err(err) => violations.push(err.at("preferences.default_model")),
                },
                unknown => violations.push(FieldViolation::new(
                    "update_mask",
                    format!(
                        "unknown path {unknown:?}; updatable paths are {}",
                        UPDATABLE_PATHS.join(", ")
                    ),
                )),
            }
        }
        let expected_version = if request.etag.is_empty() {
            None
        } else {
            match preferences::parse_etag(&request.etag) {
                Ok(version) => Some(version),
                Err(err) => {
                    violations.push(err.at("etag"));
                    None
                }
            }
        };
        if violations.is_empty() {
            Ok(Self {
                update,
                expected_version,
            })
        } else {
            Err(violations)
        }
    }
}

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchPreferencesResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::preferences_service_server::PreferencesService for PreferencesApi {
    async fn get_preferences(
        &self,
        request: Request<pb::GetPreferencesRequest>,
    ) -> Result<Response<pb::GetPreferencesResponse>, Status> {
        let user = caller(&request)?;
        let min_etag = &request.get_ref().min_etag;
        let min_version = if min_etag.is_empty() {
            None
        } else {
            Some(
                preferences::parse_etag(min_etag)
                    .map_err(|err| status(assistd_domain::Error::from(err.at("min_etag"))))?,
            )
        };
        let preferences = self
            .service
            .get_at_least(user, min_version)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetPreferencesResponse {
            preferences: Some(to_proto(&preferences)),
        }))
    }

    async fn update_preferences(
        &self,
        request: Request<pb::UpdatePreferencesRequest>,
    ) -> Result<Response<pb::UpdatePreferencesResponse>, Status> {
        let user = caller(&request)?;
        let valid = ValidUpdate::try_from(request.into_inner()).map_err(invalid)?;
        let preferences = self
            .service
            .update(user, &valid.update, valid.expected_version)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdatePreferencesResponse {
            preferences: Some(to_proto(&preferences)),
        }))
    }

    async fn list_themes(
        &self,
        _request: Request<pb::ListThemesRequest>,
    ) -> Result<Response<pb::ListThemesResponse>, Status> {
        let themes = Theme::ALL
            .into_iter()
            .map(|theme| pb::ThemeOption {
                theme: theme_to_proto(theme).into(),
                display_name: theme.display_name().to_owned(),
            })
            .collect();
        Ok(Response::new(pb::ListThemesResponse { themes }))
    }

    async fn list_languages(
        &self,
        _request: Request<pb::ListLanguagesRequest>,
    ) -> Result<Response<pb::ListLanguagesResponse>, Status> {
        let languages = LANGUAGES
            .iter()
            .map(|language| pb::Language {
                tag: language.tag.to_owned(),
                display_name: language.display_name.to_owned(),
                native_name: language.native_name.to_owned(),
            })
            .collect();
        Ok(Response::new(pb::ListLanguagesResponse { languages }))
    }

    async fn list_timezones(
        &self,
        request: Request<pb::ListTimezonesRequest>,
    ) -> Result<Response<pb::ListTimezonesResponse>, Status> {
        let request = request.into_inner();
        // Tokens are bound to the filter they were made for.
        let page = PageRequest::<TimezoneCursor>::parse(
            request.page_size,
            &request.page_token,
            TIMEZONE_PAGES,
            &request.filter,
        )
        .map_err(invalid)?;
        let after = page.after().map(|cursor| cursor.after.as_str());
        let page_size = usize::try_from(page.size().get()).unwrap_or(usize::MAX);
        let filter = request.filter.to_lowercase();
        let mut matching = preferences::timezone_names()
            .iter()
            .filter(|name| after.is_none_or(|after| **name > after))
            .filter(|name| filter.is_empty() || name.to_lowercase().contains(&filter));
        let timezones: Vec<String> = matching
            .by_ref()
            .take(page_size)
            .map(|name| (*name).to_owned())
            .collect();
        let next_page_token = match (matching.next(), timezones.last()) {
            (Some(_), Some(last)) => page.token(TimezoneCursor {
                after: last.clone(),
            }),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTimezonesResponse {
            timezones,
            next_page_token,
        }))
    }

    type WatchPreferencesStream = WatchStream;

    async fn watch_preferences(
        &self,
        request: Request<pb::WatchPreferencesRequest>,
    ) -> Result<Response<Self::WatchPreferencesStream>, Status> {
        let user = caller(&request)?;
        let watch = self.service.watch(user).await.map_err(status)?;
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(relay_watch(user, watch, sender, self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// Feeds one watch stream until the client leaves or the server shuts down.
async fn relay_watch(
    user: UserId,
    mut watch: assistd_core::PreferencesWatch,
    sender: mpsc::Sender<Result<pb::WatchPreferencesResponse, Status>>,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = sender.closed() => return,
            () = shutdown.cancelled() => {
                let _ = sender
                    .send(Err(Status::unavailable("the server is shutting down; reconnect to keep watching")))
                    .await;
                return;
            }
            next = watch.next() => next,
        };
        let item = next
            .map(|preferences| pb::WatchPreferencesResponse {
                preferences: Some(to_proto(&preferences)),
            })
            .map_err(status);
        let failed = item.is_err();
        if sender.send(item).await.is_err() || failed {
            tracing::debug!(%user, "preferences watch ended");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        paths: &[&str],
        preferences: pb::Preferences,
        etag: &str,
    ) -> pb::UpdatePreferencesRequest {
        pb::UpdatePreferencesRequest {
            preferences: Some(preferences),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            etag: etag.to_owned(),
        }
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let violations = ValidUpdate::try_from(request(
            &["timezone", "language", "colour"],
            pb::Preferences {
                timezone: "Mars/Olympus".into(),
                language: "xx-!!".into(),
                ..Default::default()
            },
            "nope",
        ))
        .unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "preferences.timezone",
                "preferences.language",
                "update_mask",
                "etag"
            ]
        );
    }

    #[test]
    fn only_masked_fields_are_taken() {
        let valid = ValidUpdate::try_from(request(
            &["theme"],
            pb::Preferences {
                theme: pb::Theme::Dark.into(),
                timezone: "Mars/Olympus".into(),
                ..Default::default()
            },
            "\"3\"",
        ))
        .unwrap();
        assert_eq!(valid.update.theme, Some(Theme::Dark));
        assert_eq!(valid.update.timezone, None);
        assert_eq!(valid.expected_version, Some(3));
    }
}
