from sandbox.testing import no_proxy_env, sandbox, sandbox_config, sandbox_tls

__all__ = ["no_proxy_env", "sandbox", "sandbox_config", "sandbox_tls"]
