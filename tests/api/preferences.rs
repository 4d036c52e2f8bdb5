//! PreferencesService over native gRPC and grpc-web.

use std::collections::HashSet;
use std::time::Duration;

use assistd::proto::preferences::v1::preferences_service_client::PreferencesServiceClient;
use assistd::proto::preferences::v1::{self as pb, Theme};
use prost_types::FieldMask;
use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use crate::helpers::{authed, spawn_app};

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

fn update(
    paths: &[&str],
    preferences: pb::Preferences,
    etag: &str,
) -> pb::UpdatePreferencesRequest {
    pb::UpdatePreferencesRequest {
        preferences: Some(preferences),
        update_mask: mask(paths),
        etag: etag.to_owned(),
    }
}

/// The caller's preferences, read through `client`.
async fn current(client: &mut PreferencesServiceClient<Channel>, token: &str) -> pb::Preferences {
    client
        .get_preferences(authed(pb::GetPreferencesRequest::default(), token))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap()
}

/// Sets the caller's timezone unconditionally through `client`.
async fn set_timezone(client: &mut PreferencesServiceClient<Channel>, token: &str, timezone: &str) {
    client
        .update_preferences(authed(
            update(
                &["timezone"],
                pb::Preferences {
                    timezone: timezone.into(),
                    ..Default::default()
                },
                "",
            ),
            token,
        ))
        .await
        .unwrap();
}

/// The field paths of the BadRequest violations in `status`.
fn violated_fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_new_user_gets_the_defaults() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let prefs = current(&mut app.preferences().await, &token).await;
    assert_eq!(prefs.theme(), Theme::System);
    assert_eq!(prefs.language, "en");
    assert_eq!(prefs.timezone, "UTC");
    assert_eq!(prefs.default_model, "");
    assert!(prefs.update_time.is_none());
    assert!(!prefs.etag.is_empty());
}

#[tokio::test]
async fn update_changes_only_masked_fields_and_survives_a_restart() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let mut client = app.preferences().await;
    let before = current(&mut client, &token).await;

    let updated = client
        .update_preferences(authed(
            update(
                &["theme", "timezone", "language", "default_model"],
                pb::Preferences {
                    theme: Theme::Dark.into(),
                    timezone: "Europe/Berlin".into(),
                    language: "pt-br".into(),
                    default_model: "gemini-2.5-flash".into(),
                    ..Default::default()
                },
                &before.etag,
            ),
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert_eq!(updated.theme(), Theme::Dark);
    assert_eq!(updated.timezone, "Europe/Berlin");
    assert_eq!(
        updated.language, "pt-BR",
        "tags are stored in canonical case"
    );
    assert_eq!(updated.default_model, "gemini-2.5-flash");
    assert_ne!(updated.etag, before.etag);
    assert!(updated.update_time.is_some());

    // A second update touching only the theme leaves the rest alone.
    let light = client
        .update_preferences(authed(
            update(
                &["theme"],
                pb::Preferences {
                    theme: Theme::Light.into(),
                    timezone: "Mars/Olympus".into(),
                    ..Default::default()
                },
                "",
            ),
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert_eq!(light.theme(), Theme::Light);
    assert_eq!(light.timezone, "Europe/Berlin");
    assert_eq!(light.language, "pt-BR");

    let app = app.restart().await;
    let after_restart = current(&mut app.preferences().await, &app.token_for(user)).await;
    assert_eq!(
        after_restart, light,
        "preferences survive a restart unchanged"
    );
}

#[tokio::test]
async fn clearing_the_default_model_with_an_empty_value() {
    let app = spawn_app().await;
    let token = app.token_for(app.create_user().await);
    let mut client = app.preferences().await;
    for (model, expected) in [("gemini-2.5-pro", "gemini-2.5-pro"), ("", "")] {
        let prefs = client
            .update_preferences(authed(
                update(
                    &["default_model"],
                    pb::Preferences {
                        default_model: model.into(),
                        ..Default::default()
                    },
                    "",
                ),
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .preferences
            .unwrap();
        assert_eq!(prefs.default_model, expected);
    }
}

#[tokio::test]
async fn bad_values_are_invalid_argument_on_the_right_field_and_change_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let mut client = app.preferences().await;
    let cases = [
        (
            update(
                &["timezone"],
                pb::Preferences {
                    timezone: "Mars/Olympus".into(),
                    ..Default::default()
                },
                "",
            ),
            vec!["preferences.timezone"],
        ),
        (
            update(
                &["language"],
                pb::Preferences {
                    language: "xx-!!".into(),
                    ..Default::default()
                },
                "",
            ),
            vec!["preferences.language"],
        ),
        (
            update(
                &["language"],
                pb::Preferences {
                    language: "tlh".into(),
                    ..Default::default()
                },
                "",
            ),
            vec!["preferences.language"],
        ),
        (
            update(
                &["theme"],
                pb::Preferences {
                    theme: Theme::Unspecified.into(),
                    ..Default::default()
                },
                "",
            ),
            vec!["preferences.theme"],
        ),
        (
            update(
                &["default_model"],
                pb::Preferences {
                    default_model: "Gemini Pro!".into(),
                    ..Default::default()
                },
                "",
            ),
            vec!["preferences.default_model"],
        ),
        (
            update(&["colour"], pb::Preferences::default(), ""),
            vec!["update_mask"],
        ),
        (
            update(&[], pb::Preferences::default(), ""),
            vec!["update_mask"],
        ),
        (
            update(
                &["theme"],
                pb::Preferences {
                    theme: Theme::Dark.into(),
                    ..Default::default()
                },
                "W/\"x\"",
            ),
            vec!["etag"],
        ),
        (
            pb::UpdatePreferencesRequest {
                preferences: None,
                update_mask: mask(&["theme"]),
                etag: String::new(),
            },
            vec!["preferences", "preferences.theme"],
        ),
    ];
    for (request, expected_fields) in cases {
        let status = client
            .update_preferences(authed(request.clone(), &token))
            .await
            .expect_err("invalid update accepted");
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{request:?}: {status:?}"
        );
        assert_eq!(violated_fields(&status), expected_fields, "{request:?}");
        assert!(!status.message().is_empty());
    }
    let stored = app.store.preferences().get(user).await.unwrap();
    assert_eq!(stored.version, 0, "no invalid update reached the database");
}

#[tokio::test]
async fn a_stale_etag_is_aborted_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let mut client = app.preferences().await;
    let first = client
        .update_preferences(authed(
            update(
                &["theme"],
                pb::Preferences {
                    theme: Theme::Dark.into(),
                    ..Default::default()
                },
                "",
            ),
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    client
        .update_preferences(authed(
            update(
                &["theme"],
                pb::Preferences {
                    theme: Theme::Light.into(),
                    ..Default::default()
                },
                &first.etag,
            ),
            &token,
        ))
        .await
        .unwrap();

    for stale in [first.etag.as_str(), "\"0\"", "\"999\""] {
        let status = client
            .update_preferences(authed(
                update(
                    &["timezone"],
                    pb::Preferences {
                        timezone: "Asia/Tokyo".into(),
                        ..Default::default()
                    },
                    stale,
                ),
                &token,
            ))
            .await
            .expect_err("stale etag accepted");
        assert_eq!(status.code(), Code::Aborted, "{stale}: {status:?}");
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "ETAG_MISMATCH");
    }
    let stored = app.store.preferences().get(user).await.unwrap();
    assert_eq!(stored.timezone.name(), "UTC");
    assert_eq!(stored.version, 2);
}

#[tokio::test]
async fn concurrent_updates_with_one_etag_let_exactly_one_win() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let etag = app
        .preferences()
        .await
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap()
        .etag;
    let mut calls = Vec::new();
    for i in 0..8 {
        let mut client = app.preferences().await;
        let request = authed(
            update(
                &["default_model"],
                pb::Preferences {
                    default_model: format!("model-{i}"),
                    ..Default::default()
                },
                &etag,
            ),
            &token,
        );
        calls.push(tokio::spawn(async move {
            client.update_preferences(request).await
        }));
    }
    let mut won = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one conditional write wins");
    assert_eq!(app.store.preferences().get(user).await.unwrap().version, 1);
}

#[tokio::test]
async fn users_never_see_each_others_preferences() {
    let app = spawn_app().await;
    let alice = app.token_for(app.create_user().await);
    let bob = app.token_for(app.create_user().await);
    let mut client = app.preferences().await;
    client
        .update_preferences(authed(
            update(
                &["timezone"],
                pb::Preferences {
                    timezone: "Asia/Tokyo".into(),
                    ..Default::default()
                },
                "",
            ),
            &alice,
        ))
        .await
        .unwrap();
    let bobs = client
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &bob))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert_eq!(bobs.timezone, "UTC");
}

#[tokio::test]
async fn themes_languages_and_timezones_are_listed() {
    let app = spawn_app().await;
    let token = app.token_for(app.create_user().await);
    let mut client = app.preferences().await;
    let themes = client
        .list_themes(authed(pb::ListThemesRequest {}, &token))
        .await
        .unwrap()
        .into_inner()
        .themes;
    let names: Vec<Theme> = themes.iter().map(pb::ThemeOption::theme).collect();
    assert_eq!(names, [Theme::Light, Theme::Dark, Theme::System]);

    let languages = client
        .list_languages(authed(pb::ListLanguagesRequest {}, &token))
        .await
        .unwrap()
        .into_inner()
        .languages;
    let brazil = languages
        .iter()
        .find(|l| l.tag == "pt-BR")
        .expect("pt-BR listed");
    assert_eq!(brazil.display_name, "Portuguese (Brazil)");
    assert!(
        languages
            .iter()
            .all(|l| !l.display_name.is_empty() && !l.native_name.is_empty())
    );

    // Walk every page: all names, once each, in order.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_timezones(authed(
                pb::ListTimezonesRequest {
                    page_size: 150,
                    page_token: page_token.clone(),
                    filter: String::new(),
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.timezones.len() <= 150);
        seen.extend(page.timezones);
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert!(pages > 1);
    assert_eq!(
        seen.len(),
        assistd_domain::preferences::timezone_names().len()
    );
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    let europe = client
        .list_timezones(authed(
            pb::ListTimezonesRequest {
                page_size: 0,
                page_token: String::new(),
                filter: "europe/ber".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(europe.timezones, ["Europe/Berlin"]);
    assert!(europe.next_page_token.is_empty());

    let bad = client
        .list_timezones(authed(
            pb::ListTimezonesRequest {
                page_size: 10,
                page_token: "%%%".into(),
                filter: String::new(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["page_token"]);
}

#[tokio::test]
async fn watch_sees_the_current_state_then_changes_from_other_connections() {
    let app = spawn_app().await;
    let user = app.create_user().await;
    let token = app.token_for(user);
    let mut stream = app
        .preferences()
        .await
        .watch_preferences(authed(pb::WatchPreferencesRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap().preferences.unwrap();
    assert_eq!(first.timezone, "UTC");

    // Another connection (its own HTTP/2 channel) changes the timezone twice.
    let mut other = app.preferences().await;
    for timezone in ["Asia/Tokyo", "America/New_York"] {
        set_timezone(&mut other, &token, timezone).await;
        let seen = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the watch delivers the change")
            .unwrap()
            .unwrap()
            .preferences
            .unwrap();
        assert_eq!(seen.timezone, timezone);
    }

    // Another user's change is not delivered to this watch.
    let stranger = app.token_for(app.create_user().await);
    other
        .update_preferences(authed(
            update(
                &["theme"],
                pb::Preferences {
                    theme: Theme::Dark.into(),
                    ..Default::default()
                },
                "",
            ),
            &stranger,
        ))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err(),
        "a stranger's change reached this watch"
    );
}

#[tokio::test]
async fn preferences_work_over_grpc_web() {
    let app = spawn_app().await;
    let token = app.token_for(app.create_user().await);
    let mut web = app.preferences_web();
    let current = web
        .get_preferences(authed(pb::GetPreferencesRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    let mut watch = web
        .watch_preferences(authed(pb::WatchPreferencesRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().preferences.unwrap(),
        current
    );

    let updated = app
        .preferences_web()
        .update_preferences(authed(
            update(
                &["language"],
                pb::Preferences {
                    language: "de".into(),
                    ..Default::default()
                },
                &current.etag,
            ),
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert_eq!(updated.language, "de");
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("grpc-web watch delivers the change")
        .unwrap()
        .unwrap()
        .preferences
        .unwrap();
    assert_eq!(seen, updated);

    // Errors keep their code and details over grpc-web.
    let status = app
        .preferences_web()
        .update_preferences(authed(
            update(
                &["timezone"],
                pb::Preferences {
                    timezone: "Mars/Olympus".into(),
                    ..Default::default()
                },
                "",
            ),
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["preferences.timezone"]);
}

#[tokio::test]
async fn watch_crosses_replicas_on_postgresql_only() {
    let app = spawn_app().await;
    let replica = app.replica().await;
    let token = app.token_for(app.create_user().await);
    let mut watch = app
        .preferences()
        .await
        .watch_preferences(authed(pb::WatchPreferencesRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    watch.next().await.unwrap().unwrap();
    set_timezone(&mut replica.preferences().await, &token, "Africa/Nairobi").await;
    let delivered = tokio::time::timeout(Duration::from_secs(5), watch.next()).await;
    if app.config.database.url.starts_with("postgres") {
        let seen = delivered
            .expect("LISTEN/NOTIFY carries the change to the other replica")
            .unwrap()
            .unwrap()
            .preferences
            .unwrap();
        assert_eq!(seen.timezone, "Africa/Nairobi");

        // A replica's cached read is invalidated by the other replica's change too, for a
        // user nobody watches.
        let other = app.token_for(app.create_user().await);
        let mut here = app.preferences().await;
        assert_eq!(current(&mut here, &other).await.timezone, "UTC");
        set_timezone(&mut replica.preferences().await, &other, "Asia/Seoul").await;
        let mut seen = String::new();
        for _ in 0..100 {
            seen = current(&mut here, &other).await.timezone;
            if seen == "Asia/Seoul" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            seen, "Asia/Seoul",
            "the cached read was not invalidated within 5 s"
        );
    } else {
        // SQLite is the single-server deployment: two processes on one file do not notify
        // each other (README, "Replicas"). This pins that documented behaviour.
        assert!(
            delivered.is_err(),
            "SQLite replicas are not expected to notify each other"
        );
    }
}

#[tokio::test]
async fn a_read_with_a_writes_etag_sees_that_write_on_any_replica() {
    let app = spawn_app().await;
    let replica = app.replica().await;
    let token = app.token_for(app.create_user().await);
    let mut here = app.preferences().await;
    let mut there = replica.preferences().await;
    // The other replica has the defaults cached.
    assert_eq!(current(&mut there, &token).await.timezone, "UTC");
    let zones = [
        "Africa/Nairobi",
        "Asia/Seoul",
        "Europe/Paris",
        "America/Lima",
    ];
    for round in 0..100 {
        let zone = zones[round % zones.len()];
        let written = here
            .update_preferences(authed(
                update(
                    &["timezone"],
                    pb::Preferences {
                        timezone: zone.into(),
                        ..Default::default()
                    },
                    "",
                ),
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .preferences
            .unwrap();
        let read = there
            .get_preferences(authed(
                pb::GetPreferencesRequest {
                    min_etag: written.etag.clone(),
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .preferences
            .unwrap();
        assert_eq!(read.timezone, zone, "round {round}");
        assert_eq!(read.etag, written.etag, "round {round}");
    }
    let status = there
        .get_preferences(authed(
            pb::GetPreferencesRequest {
                min_etag: "v7".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["min_etag"]);
}
