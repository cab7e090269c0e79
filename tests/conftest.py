from sandbox.testing import no_proxy_env, sandbox, sandbox_config

__all__ = ["no_proxy_env", "sandbox", "sandbox_config"]
