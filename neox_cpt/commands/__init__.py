"""One module per ``neox-cpt`` subcommand (see ``neox_cpt.cli.SUBCOMMANDS``)."""
