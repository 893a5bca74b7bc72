"""The `coatbench` command line: its commands (`cli.commands`) and the options they share
(`cli.options`)."""
