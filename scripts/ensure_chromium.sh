#!/bin/sh
# Chromium for the HTML report's browser test (tests/report/test_html.py), from the system's
# package manager: Debian's `chromium`. Nothing to do where a Chromium is already on PATH.
#
# --no-install-recommends: the browser runs headless; its recommends pull in a notification
# daemon and with it a desktop shell. fonts-dejavu-core is the font the report's figures name.
set -eu

for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
        exit 0
    fi
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: no chromium on PATH and no apt-get to install it with;" \
         "install Chromium with this system's package manager, or the HTML report's browser test is skipped" >&2
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "ensure_chromium: no chromium on PATH, and installing it needs root:" \
         "run 'sudo apt-get install --no-install-recommends chromium fonts-dejavu-core'," \
         "or the HTML report's browser test is skipped" >&2
    exit 0
fi

echo "ensure_chromium: installing Debian's chromium for the HTML report's browser test"
failed() {
    echo "ensure_chromium: '$1' failed (its error is above); the HTML report's browser test needs chromium" >&2
    exit 1
}
$as_root apt-get update -q || failed "apt-get update"
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core \
    || failed "apt-get install chromium"
