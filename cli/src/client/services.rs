//! The service routes (`/v1/svc`).

use funless_api::types::{ServiceInfo, ServiceLogLine, ServiceSpecRequest};
use reqwest::Method;
use reqwest::multipart::{Form, Part};

use super::{Client, Reply};
use crate::error::ClientError;

impl Client {
    /// `POST /v1/svc/:name` (multipart `code`, `spec`): creates a service.
    pub(crate) async fn create_service(
        &self,
        name: &str,
        code: Vec<u8>,
        file_name: String,
        spec: &ServiceSpecRequest,
    ) -> Result<Reply<ServiceInfo>, ClientError> {
        let code = Part::bytes(code)
            .file_name(file_name)
            .mime_str("application/wasm")
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let spec = serde_json::to_string(spec).map_err(|e| ClientError::Request(e.to_string()))?;
        let form = Form::new().part("code", code).text("spec", spec);
        self.send(
            self.request(Method::POST, &format!("/v1/svc/{name}"))
                .multipart(form),
        )
        .await
    }

    /// `PUT /v1/svc/:name` (multipart `code` and/or `spec`): a rolling restart with the new
    /// version.
    pub(crate) async fn update_service(
        &self,
        name: &str,
        code: Option<(Vec<u8>, String)>,
        spec: Option<&ServiceSpecRequest>,
    ) -> Result<Reply<ServiceInfo>, ClientError> {
        let mut form = Form::new();
        if let Some((code, file_name)) = code {
            let part = Part::bytes(code)
                .file_name(file_name)
                .mime_str("application/wasm")
                .map_err(|e| ClientError::Request(e.to_string()))?;
            form = form.part("code", part);
        }
        if let Some(spec) = spec {
            let spec =
                serde_json::to_string(spec).map_err(|e| ClientError::Request(e.to_string()))?;
            form = form.text("spec", spec);
        }
        self.send(
            self.request(Method::PUT, &format!("/v1/svc/{name}"))
                .multipart(form),
        )
        .await
    }

    /// `GET /v1/svc`.
    pub(crate) async fn list_services(&self) -> Result<Reply<Vec<ServiceInfo>>, ClientError> {
        self.send(self.request(Method::GET, "/v1/svc")).await
    }

    /// `GET /v1/svc/:name`.
    pub(crate) async fn get_service(&self, name: &str) -> Result<Reply<ServiceInfo>, ClientError> {
        self.send(self.request(Method::GET, &format!("/v1/svc/{name}")))
            .await
    }

    /// `DELETE /v1/svc/:name`.
    pub(crate) async fn delete_service(&self, name: &str) -> Result<Reply<()>, ClientError> {
        self.send(self.request(Method::DELETE, &format!("/v1/svc/{name}")))
            .await
    }

    /// `GET /v1/svc/:name/logs?lines=N`.
    pub(crate) async fn service_logs(
        &self,
        name: &str,
        lines: usize,
    ) -> Result<Reply<Vec<ServiceLogLine>>, ClientError> {
        self.send(self.request(Method::GET, &format!("/v1/svc/{name}/logs?lines={lines}")))
            .await
    }
}
