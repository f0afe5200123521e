//! An app's gateway stages, built once per deployed version: its firewall, CORS policy and
//! authorizers (a function authorizer holds the pool of the version's function), and each route's body limit, rate limit and authorizer. Keeping them with the version (rather than
//! rebuilding them with every routing table) means a deploy of one app leaves another's
//! rate-limit buckets and fetched issuer keys as they were.

use crate::auth::apikey::ApiKeySet;
use crate::auth::function::FunctionAuthorizer;
use crate::auth::jwks::KeyDocument;
use crate::auth::{Authorizer, JwtAuthorizer, RouteAuth};
use crate::cors::Cors;
use crate::firewall::Firewall;
use crate::ratelimit::RateLimiter;
use nimbus_core::spec::JwtAuthorizerSpec;
use nimbus_core::{AppSpec, AuthorizerSpec};
use nimbus_dispatch::Pool;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What stands in front of one route's function.
#[derive(Clone, Default)]
pub struct RouteStages {
    pub cors: Option<Arc<Cors>>,
    pub firewall: Option<Arc<Firewall>>,
    /// The route's own body limit, when it has one.
    pub max_body_bytes: Option<u64>,
    pub rate_limit: Option<Arc<RateLimiter>>,
    pub auth: Option<Arc<RouteAuth>>,
}

/// Every route's stages, in the order of the app's routes.
#[derive(Default)]
pub struct AppStages {
    routes: Vec<RouteStages>,
    /// The app-wide stages, for the services it mounts.
    app: RouteStages,
}

/// What an app's stages draw on besides its manifest.
#[derive(Clone, Copy)]
pub struct StageSources<'a> {
    /// Fetches issuers' keys when first needed.
    pub client: &'a reqwest::Client,
    /// The app's own auth, for `auth` authorizers.
    pub own: Option<&'a OwnIssuer>,
    /// The app's API keys, for `api_key` authorizers.
    pub api_keys: Option<&'a Arc<ApiKeySet>>,
    /// The app's functions, for `function` authorizers.
    pub functions: &'a BTreeMap<String, Arc<Pool>>,
}

/// An app's own auth as an issuer: the `iss` of its tokens and its current key set.
#[derive(Clone)]
pub struct OwnIssuer {
    pub issuer: String,
    pub keys: KeyDocument,
}

impl AppStages {
    /// Build `app`'s stages from what they draw on.
    pub fn new(app: &AppSpec, with: StageSources<'_>) -> AppStages {
        let StageSources {
            client,
            own,
            api_keys,
            functions,
        } = with;
        let cors = app.cors.as_ref().map(|c| Arc::new(Cors::new(c)));
        let firewall = app.firewall.as_ref().map(|f| Arc::new(Firewall::new(f)));
        let authorizers: BTreeMap<_, _> = app
            .authorizers
            .iter()
            .map(|(name, spec)| {
                let jwt = match spec {
                    AuthorizerSpec::ApiKey { header } => {
                        let header = http::HeaderName::from_bytes(header.as_bytes())
                            .unwrap_or(http::HeaderName::from_static("x-api-key"));
                        let keys = api_keys.cloned().unwrap_or_default();
                        return (name, Authorizer::ApiKey { keys, header });
                    }
                    AuthorizerSpec::Function(spec) => {
                        let pool = functions.get(spec.function.as_str()).cloned();
                        let authorizer = FunctionAuthorizer::new(spec, pool);
                        return (name, Authorizer::Function(Arc::new(authorizer)));
                    }
                    AuthorizerSpec::Jwt(jwt) => JwtAuthorizer::new(jwt, client.clone()),
                    AuthorizerSpec::Auth { leeway } => match own {
                        Some(own) => JwtAuthorizer::own(own, *leeway, client.clone()),
                        // The manifest refuses this; should it happen, nothing verifies.
                        None => JwtAuthorizer::with_key_set(
                            &JwtAuthorizerSpec {
                                issuer: String::new(),
                                audience: vec![nimbus_core::spec::AuthSpec::AUDIENCE.to_owned()],
                                jwks_url: None,
                                algorithms: vec![nimbus_core::spec::AuthSpec::ALGORITHM.to_owned()],
                                leeway: *leeway,
                            },
                            br#"{"keys":[]}"#,
                        ),
                    },
                };
                (name, Authorizer::Jwt(Arc::new(jwt)))
            })
            .collect();
        let routes = app
            .routes
            .iter()
            .map(|route| RouteStages {
                cors: match &route.cors {
                    Some(own) => Some(Arc::new(Cors::new(own))),
                    None => cors.clone(),
                },
                firewall: firewall.clone(),
                max_body_bytes: route.max_body_bytes,
                rate_limit: route
                    .rate_limit
                    .as_ref()
                    .map(|l| Arc::new(RateLimiter::new(l))),
                auth: route
                    .auth
                    .as_ref()
                    .and_then(|name| authorizers.get(name))
                    .map(|authorizer| {
                        Arc::new(RouteAuth {
                            authorizer: authorizer.clone(),
                            scopes: route.scopes.clone().into(),
                        })
                    }),
            })
            .collect();
        AppStages {
            routes,
            app: RouteStages {
                cors,
                firewall,
                ..RouteStages::default()
            },
        }
    }

    /// The stages in front of a service the app mounts (its auth API): the app's firewall
    /// and CORS policy.
    pub fn service(&self) -> RouteStages {
        self.app.clone()
    }

    /// The stages of the app's route at `index`.
    pub fn route(&self, index: usize) -> RouteStages {
        self.routes.get(index).cloned().unwrap_or_default()
    }
}
