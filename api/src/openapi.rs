//! The API's own OpenAPI 3.1 document, served at `/v1/openapi.json`.
//!
//! Every request and response body is the schema of the type the server itself (de)serializes
//! (`crate::types`, `derive(ToSchema)`), so bodies cannot drift from the document. The
//! operations are declared here, one stub per route; the tests below send every documented
//! method of every documented path through the real router and check each is routed, and
//! that every other method of those paths is not, so the list of operations cannot drift
//! from the router either.
// The stubs exist for their attributes; utoipa's macros generate public items.
#![allow(dead_code, unreachable_pub)]

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::types::{
    ActivationInfo, ActivationStarted, AppScriptInfo, ClusterTree, CrashRequest, Crashed,
    CreatedSubject, Data, ErrorBody, FunctionCreated, FunctionInfo, InvokeRequest, ModuleInfo,
    ModuleRequest, Named, NodeConnected, NodeRequest, SubjectRequest, WorkerInfo,
};

/// The document as JSON text, built once.
pub(crate) fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // A derived document always serializes; an empty object would say something broke.
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|_| "{}".to_string())
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "FunLess in Rust",
        description = "The REST API of the FunLess Core: FunLess's routes and shapes (successful answers in `{\"data\": ...}`, errors as `{\"errors\": {\"detail\": \"...\"}}`), plus workers, nodes, activations and APP script management. docs/COMPATIBILITY.md lists where it differs from FunLess.",
        license(name = "Apache-2.0")
    ),
    paths(
        liveness, liveness_slash, health, metrics, openapi_document,
        list_subjects, create_subject, revoke_subject, list_workers, connect_node, tree, crash,
        list_app_scripts, create_app_script, get_app_script, delete_app_script,
        list_modules, create_module, get_module, rename_module, delete_module, create_function,
        get_function, update_function, delete_function, invoke, list_activations,
        get_activation,
        crate::services::doc::list_services, crate::services::doc::create_service,
        crate::services::doc::get_service, crate::services::doc::update_service,
        crate::services::doc::delete_service,
        crate::services::doc::service_logs,
        crate::versions::doc::list_versions, crate::versions::doc::get_version,
        crate::versions::doc::invoke_version, crate::versions::doc::delete_version,
        crate::versions::doc::rollback,
        crate::versions::doc::module_config, crate::versions::doc::change_module_config,
        crate::versions::doc::function_config, crate::versions::doc::change_function_config,
        crate::secrets::doc::list_secrets, crate::secrets::doc::put_secret,
        crate::secrets::doc::delete_secret,
        crate::canary::doc::get_canary, crate::canary::doc::set_canary,
        crate::canary::doc::end_canary, crate::canary::doc::promote_canary,
    ),
    components(schemas(ErrorBody, FunctionForm, AppScriptForm, Health, crate::services::doc::ServiceForm)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "functions", description = "Modules, functions and invocations"),
        (name = "app", description = "APP scheduling scripts"),
        (name = "services", description = "Long-running services kept alive under a child spec"),
        (name = "admin", description = "Subjects, workers and nodes (admin token)"),
        (name = "platform", description = "Liveness, health, metrics and this document"),
    )
)]
struct ApiDoc;

/// Bearer tokens: a subject's, or an admin's for `admin` operations.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The multipart form of function create and update (FunLess's fields, plus ours).
#[derive(ToSchema)]
struct FunctionForm {
    /// Function name (on update: the new name, a rename when it differs from the path).
    name: Option<String>,
    /// The code: a WebAssembly module or component, or JavaScript source.
    #[schema(value_type = String, format = Binary)]
    code: Vec<u8>,
    /// `wasm` or `js` (default: told from the code).
    language: Option<String>,
    /// JSON text of `FunctionMetadata`: tag, capacity, retryable, timeout_ms, allow_hosts.
    metadata: Option<String>,
    /// JSON text: a list of FunLess events (`{"type": "mqtt"|"nats"|"cron", "params": {}}`).
    events: Option<String>,
    /// JSON text: a list of FunLess sinks (`{"type": "couchdb"|"webhook", "params": {}}`).
    sinks: Option<String>,
    /// Answer after every worker compiled the code (default true).
    wait_for_workers: Option<bool>,
    /// On update only: a percentage, 1 to 99. The code becomes a new version that is not the
    /// current one but the function's canary, getting that share of its invocations (`.../canary`).
    canary: Option<u8>,
}

/// The multipart form of an APP script upload (FunLess's fields).
#[derive(ToSchema)]
struct AppScriptForm {
    /// Script name.
    name: String,
    /// The YAML script.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// `GET /health`.
#[derive(ToSchema)]
struct Health {
    /// Always `ok` while the API answers.
    status: String,
}

/// `?blocking=false` of an invocation.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InvokeQuery {
    /// `false`: answer 202 with an activation id at once (also the body's `blocking`).
    blocking: Option<bool>,
}

/// `?limit=N` of an activation list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// How many, newest first (1 to 200, default 20).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
}

const ERROR: &str = "The error (`{\"errors\": {\"detail\": \"...\"}}`): 400 bad input, 401 no or unknown token, 403 not allowed, 404 not found, 409 name taken, 413 body too large, 429 a quota of the subject (or of the client's bodies in flight) is reached, 500 our fault, 502 a node cannot be reached, 503 no worker can run it now, 504 the worker did not answer in time";

#[utoipa::path(get, path = "/v1", tag = "platform", security(()),
    responses((status = 200, description = "The API is up", content_type = "text/plain", body = String)))]
fn liveness() {}

#[utoipa::path(get, path = "/v1/", tag = "platform", security(()),
    responses((status = 200, description = "The API is up", content_type = "text/plain", body = String)))]
fn liveness_slash() {}

#[utoipa::path(get, path = "/health", tag = "platform", security(()),
    responses((status = 200, description = "Healthy", body = Health)))]
fn health() {}

#[utoipa::path(get, path = "/metrics", tag = "platform", security(()),
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text)",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
fn metrics() {}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "platform", security(()),
    responses((status = 200, description = "This document", body = Object)))]
fn openapi_document() {}

#[utoipa::path(get, path = "/v1/admin/subjects", tag = "admin",
    responses((status = 200, description = "Subject names", body = Data<Vec<Named>>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn list_subjects() {}

#[utoipa::path(post, path = "/v1/admin/subjects", tag = "admin", request_body = SubjectRequest,
    responses((status = 201, description = "The subject and its token (shown this once)", body = Data<CreatedSubject>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn create_subject() {}

#[utoipa::path(delete, path = "/v1/admin/subjects/{name}", tag = "admin",
    params(("name" = String, Path, description = "Subject name")),
    responses((status = 204, description = "Its token is revoked"),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn revoke_subject() {}

#[utoipa::path(get, path = "/v1/workers", tag = "admin",
    responses((status = 200, description = "The workers and their state", body = Data<Vec<WorkerInfo>>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn list_workers() {}

#[utoipa::path(post, path = "/v1/admin/nodes", tag = "admin", request_body = NodeRequest,
    responses((status = 200, description = "Connected", body = Data<NodeConnected>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn connect_node() {}

#[utoipa::path(get, path = "/v1/admin/tree", tag = "admin",
    responses((status = 200, description = "The supervision trees of the Core and every worker", body = Data<ClusterTree>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn tree() {}

#[utoipa::path(post, path = "/v1/admin/crash", tag = "admin", request_body = CrashRequest,
    responses((status = 200, description = "The actor was killed (only with --fault-injection)", body = Data<Crashed>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn crash() {}

#[utoipa::path(get, path = "/v1/scripts/app", tag = "app",
    responses((status = 200, description = "Script names", body = Data<Vec<Named>>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn list_app_scripts() {}

#[utoipa::path(post, path = "/v1/scripts/app", tag = "app",
    request_body(content = AppScriptForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "The script, parsed", body = Data<AppScriptInfo>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn create_app_script() {}

#[utoipa::path(get, path = "/v1/scripts/app/{name}", tag = "app",
    params(("name" = String, Path, description = "Script name")),
    responses((status = 200, description = "The script", body = Data<AppScriptInfo>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn get_app_script() {}

#[utoipa::path(delete, path = "/v1/scripts/app/{name}", tag = "app",
    params(("name" = String, Path, description = "Script name")),
    responses((status = 204, description = "Deleted (admin)"),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn delete_app_script() {}

#[utoipa::path(get, path = "/v1/fn", tag = "functions",
    responses((status = 200, description = "The caller's modules", body = Data<Vec<Named>>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn list_modules() {}

#[utoipa::path(post, path = "/v1/fn", tag = "functions", request_body = ModuleRequest,
    responses((status = 201, description = "Created", body = Data<Named>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn create_module() {}

#[utoipa::path(get, path = "/v1/fn/{module}", tag = "functions",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "The module and its functions", body = Data<ModuleInfo>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn get_module() {}

#[utoipa::path(put, path = "/v1/fn/{module}", tag = "functions", request_body = ModuleRequest,
    params(("module" = String, Path, description = "Module name")),
    responses((status = 200, description = "Renamed", body = Data<Named>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn rename_module() {}

#[utoipa::path(delete, path = "/v1/fn/{module}", tag = "functions",
    params(("module" = String, Path, description = "Module name")),
    responses((status = 204, description = "Deleted with its functions"),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn delete_module() {}

#[utoipa::path(post, path = "/v1/fn/{module}", tag = "functions",
    params(("module" = String, Path, description = "Module name")),
    request_body(content = FunctionForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "Created", body = Data<FunctionCreated>),
        (status = 207, description = "Created; an event connector is not connected yet (it keeps retrying)", body = Data<FunctionCreated>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn create_function() {}

#[utoipa::path(get, path = "/v1/fn/{module}/{function}", tag = "functions",
    params(("module" = String, Path, description = "Module name"),
        ("function" = String, Path, description = "Function name")),
    responses((status = 200, description = "The function", body = Data<FunctionInfo>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn get_function() {}

#[utoipa::path(put, path = "/v1/fn/{module}/{function}", tag = "functions",
    params(("module" = String, Path, description = "Module name"),
        ("function" = String, Path, description = "Function name")),
    request_body(content = FunctionForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "Updated (renamed when the form's name differs)", body = Data<FunctionCreated>),
        (status = 207, description = "Updated; an event connector is not connected yet", body = Data<FunctionCreated>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn update_function() {}

#[utoipa::path(delete, path = "/v1/fn/{module}/{function}", tag = "functions",
    params(("module" = String, Path, description = "Module name"),
        ("function" = String, Path, description = "Function name")),
    responses((status = 204, description = "Deleted"),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn delete_function() {}

#[utoipa::path(post, path = "/v1/fn/{module}/{function}", tag = "functions",
    params(("module" = String, Path, description = "Module name"),
        ("function" = String, Path, description = "Function name"), InvokeQuery),
    request_body(content = Option<InvokeRequest>, description = "Arguments and scheduling (an empty body is `{}`)"),
    responses(
        (status = 200, description = "The function's result", body = Data<serde_json::Value>,
            headers(("x-funless-worker" = String, description = "The worker that ran it"),
                ("x-funless-activation-id" = String, description = "Its activation record"),
                ("x-funless-version" = u64, description = "The version of the function that ran"),
                ("x-funless-track" = String, description = "When the function has a canary: `stable` or `canary`, the side of the split this call took"),
                ("server-timing" = String, description = "Where the time went, stage by stage (W3C Server Timing): auth, body, parse, lookup, schedule, cluster, spawn, run, worker, record, total"))),
        (status = 202, description = "Started (`blocking: false`)", body = Data<ActivationStarted>),
        (status = 422, description = "The function failed", body = ErrorBody,
            headers(("x-funless-error-reason" = String, description = "function_error, trap, timeout, memory_limit, output_too_large or bad_output"),
                ("x-funless-version" = u64, description = "The version of the function that failed"))),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn invoke() {}

#[utoipa::path(get, path = "/v1/fn/{module}/{function}/activations", tag = "functions",
    params(("module" = String, Path, description = "Module name"),
        ("function" = String, Path, description = "Function name"), ListQuery),
    responses((status = 200, description = "Its newest activations", body = Data<Vec<ActivationInfo>>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn list_activations() {}

#[utoipa::path(get, path = "/v1/activations/{id}", tag = "functions",
    params(("id" = String, Path, description = "Activation id")),
    responses((status = 200, description = "The activation", body = Data<ActivationInfo>),
        (status = "default", description = ERROR, body = ErrorBody)))]
fn get_activation() {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

    fn document() -> Value {
        serde_json::from_str(super::json()).unwrap()
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_schema_it_names() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced, not defined"
            );
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        let error = &schemas["ErrorBody"];
        assert_eq!(error["required"], serde_json::json!(["errors"]), "{error}");
    }

    /// Every documented operation reaches a handler, and every other method of a documented
    /// path does not (405): the document lists exactly the router's operations on its paths.
    #[tokio::test]
    async fn the_document_and_the_router_agree() {
        let app = crate::router(Arc::new(crate::routes::tests::Broken));
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 18, "{}", paths.len());
        let mut operations = 0;
        for (path, item) in paths {
            let concrete = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            for method in METHODS {
                let request = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&concrete)
                    .header("authorization", "Bearer t")
                    .body(Body::empty())
                    .unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let routed = status != StatusCode::METHOD_NOT_ALLOWED
                    && !String::from_utf8_lossy(&body).contains("no such route");
                let documented = item.get(method).is_some();
                operations += usize::from(documented);
                assert_eq!(
                    routed, documented,
                    "{method} {path}: routed {routed} ({status}), documented {documented}"
                );
            }
        }
        assert!(operations >= 25, "{operations}");
    }
}
