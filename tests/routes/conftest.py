from tests.stackfixtures import module_redis, stack  # noqa: F401
