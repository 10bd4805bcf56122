"""Redis keys shared by the writers and the readers of cached read models."""

FEATURES_PREFIX = "features:"


def features_key(user_id: str) -> str:
    return FEATURES_PREFIX + user_id
