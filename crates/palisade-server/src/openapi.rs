//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use crate::{api, audit, fleet};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "Session cookie set by /api/v1/auth/login. State changes also need the \
                 session's CSRF token in the X-CSRF-Token header.",
            ))),
        );
        c.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "API token from `palisade token add --scope read|admin`; read tokens \
                         may only GET.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Palisade API",
        description = "Events, decisions, addresses, statistics, allowlist, live feed, cloud \
                       audit and fleet (agents, fleet bans, per-host views) of a Palisade intrusion-prevention daemon.",
        license(name = "Apache-2.0")
    ),
    paths(
        api::health, api::login, api::logout, api::me, api::events, api::decisions, api::ban,
        api::delete_decision, api::unban, api::ip_detail, api::stats_handler, api::allowlist,
        api::allowlist_add, api::allowlist_delete, api::jails, api::meta, api::feed,
        api::openapi_json, api::metrics, audit::findings, audit::events, audit::runs,
        fleet::agents, fleet::revoke, fleet::decisions, fleet::block, fleet::overview
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Sessions"),
        (name = "events", description = "Matched log lines"),
        (name = "decisions", description = "Bans"),
        (name = "ips", description = "Addresses"),
        (name = "stats", description = "Aggregates"),
        (name = "allowlist", description = "Never-ban list kept in the database"),
        (name = "jails", description = "Jails of the running daemon"),
        (name = "feed", description = "Live feed"),
        (name = "audit", description = "Cloud audit: open findings, their history, runs"),
        (name = "fleet", description = "Fleet server: its agents, the fleet ban log, block lists, the fleet overview"),
        (name = "system", description = "Health, metadata, metrics")
    )
)]
struct ApiDoc;

/// The document as JSON.
pub(crate) fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.to_json().unwrap_or_else(|_| "{}".to_owned())
}
