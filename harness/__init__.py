"""zdtm harness: specs, builder, runner, flavors, engine plugins, state oracle, reports."""
