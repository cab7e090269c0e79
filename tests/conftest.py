from sandbox.testing import no_proxy_env, sandbox, sandbox_config, sandbox_tls
from tests.redisserver import redis_server

__all__ = ["no_proxy_env", "redis_server", "sandbox", "sandbox_config", "sandbox_tls"]
