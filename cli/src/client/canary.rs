//! The canary routes (`/v1/fn/:mod/:fn/canary`).

use funless_api::types::{CanaryInfo, CanarySplit, FunctionCreated};
use reqwest::Method;

use super::{Client, Reply};
use crate::error::ClientError;

fn canary_path(module: &str, name: &str) -> String {
    format!("/v1/fn/{module}/{name}/canary")
}

impl Client {
    /// `GET /v1/fn/:mod/:fn/canary`: the canary and each version's outcomes.
    pub(crate) async fn canary(
        &self,
        module: &str,
        name: &str,
    ) -> Result<Reply<CanaryInfo>, ClientError> {
        self.send(self.request(Method::GET, &canary_path(module, name)))
            .await
    }

    /// `PUT /v1/fn/:mod/:fn/canary`: starts the canary, or changes its version or share.
    pub(crate) async fn set_canary(
        &self,
        module: &str,
        name: &str,
        split: CanarySplit,
    ) -> Result<Reply<CanaryInfo>, ClientError> {
        self.send(
            self.request(Method::PUT, &canary_path(module, name))
                .json(&split),
        )
        .await
    }

    /// `DELETE /v1/fn/:mod/:fn/canary`: ends the canary; answers what it came to.
    pub(crate) async fn end_canary(
        &self,
        module: &str,
        name: &str,
    ) -> Result<Reply<CanaryInfo>, ClientError> {
        self.send(self.request(Method::DELETE, &canary_path(module, name)))
            .await
    }

    /// `POST /v1/fn/:mod/:fn/canary/promote`: the canary's version becomes the current one.
    pub(crate) async fn promote_canary(
        &self,
        module: &str,
        name: &str,
    ) -> Result<Reply<FunctionCreated>, ClientError> {
        let path = format!("{}/promote", canary_path(module, name));
        self.send(self.request(Method::POST, &path)).await
    }
}
