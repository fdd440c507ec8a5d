"""The dads services (edge agent, broker, cloud workers, planner) and the `dads` command line."""
