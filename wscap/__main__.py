from wscap.cli.main import run

# prog_name: `python -m wscap` reads as `wscap` in usage lines and uses _WSCAP_COMPLETE for completion.
run()
