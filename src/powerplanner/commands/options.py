"""Names shared by several commands' options: the environment variables that stand in for them (a container
sets ``POWERPLANNER_CONFIG`` once instead of templating arguments; README, "Command line")."""

from __future__ import annotations

CONFIG_ENV = "POWERPLANNER_CONFIG"
LOG_LEVEL_ENV = "POWERPLANNER_LOG_LEVEL"
LOG_FORMAT_ENV = "POWERPLANNER_LOG_FORMAT"
LOG_LEVEL_HELP = "debug, info, warning or error (httpx's request lines show only at debug)."
LOG_FORMAT_HELP = "text, or json: one JSON object per line (time, level, logger, message)."
