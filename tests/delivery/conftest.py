from tests.stackfixtures import module_redis, routed, stack, stack_store  # noqa: F401
