//! Process-level helpers shared by the `funless-core` and `funless-worker` binaries.

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what systemd and Kubernetes send).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
