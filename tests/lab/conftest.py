def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "lab: end-to-end reproduction-lab run (root, chromium and scripts/lab/node_modules needed)",
    )
