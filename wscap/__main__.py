from wscap.cli.main import main

# prog_name: `python -m wscap` reads as `wscap` in usage lines and uses _WSCAP_COMPLETE for completion.
main(prog_name="wscap")
