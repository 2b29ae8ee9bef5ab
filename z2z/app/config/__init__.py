"""Gateway configuration: one table of settings (`schema`), their checks (`checks`), the file (`files`).

Every setting is one field of `GatewayConfig` declared with `setting(...)`: its
default, its check, whether a SIGHUP applies it, its flag and its doc.  The
TOML keys are the long flag names; `FIELDS`, `RELOADABLE`, `FIELD_DOCS`, the
`z2z run` flags and docs/configuration.md are all derived from that one table.
"""

from z2z.app.config.checks import LOG_LEVELS, ConfigError
from z2z.app.config.files import check_file, load_file, render_reference
from z2z.app.config.schema import (
    DEFAULT_CONFIG,
    DEFAULT_SUBTYPES,
    DEFAULT_TYPES,
    FIELD_DOCS,
    FIELDS,
    PUBLIC_BOOTSTRAP,
    RELOADABLE,
    SETTINGS,
    GatewayConfig,
    Setting,
    add_flags,
    build,
    check_settings,
    default_site,
    default_state_dir,
    reload_diff,
    setting,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SUBTYPES",
    "DEFAULT_TYPES",
    "FIELDS",
    "FIELD_DOCS",
    "LOG_LEVELS",
    "PUBLIC_BOOTSTRAP",
    "RELOADABLE",
    "SETTINGS",
    "ConfigError",
    "GatewayConfig",
    "Setting",
    "add_flags",
    "build",
    "check_file",
    "check_settings",
    "default_site",
    "default_state_dir",
    "load_file",
    "reload_diff",
    "render_reference",
    "setting",
]
