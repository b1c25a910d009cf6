from mavera_cli.entry import run

run()
