#!/usr/bin/env bash
# Install the system packages calmplace needs, or say what to install.
#   espeak-ng, libespeak-ng1: the speech engine pyttsx3 drives on Linux
#   ffmpeg: phone recordings (m4a/aac through pydub) and the independent measurements in tests
#   poppler-utils: pdftotext/pdftoppm, to read back and look at the PDFs in tests
#   gcc (optional): compiles calmplace's filter loop (src/calmplace/_sos.c) when the .venv is made;
#     without it a build gives the same bytes, slower
set -u
case "$(uname -s)" in
  Linux) ;;
  *) exit 0 ;;  # macOS/Windows: pyttsx3 uses the native driver (nsss, sapi5); nothing to install
esac
can_install() { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; }   # root, with apt
missing=()
ldconfig -p 2>/dev/null | grep -q 'libespeak-ng\.so\.1' || missing+=(libespeak-ng1)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v pdftotext >/dev/null || missing+=(poppler-utils)
if ! command -v cc >/dev/null && ! command -v gcc >/dev/null; then
  if can_install; then
    missing+=(gcc libc6-dev)
  else
    echo "calmplace: no C compiler: builds will be slower (same bytes); sudo apt-get install gcc" >&2
  fi
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if can_install; then
  echo "calmplace: installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_get() {   # apt-get "$@", quiet; another apt (unattended-upgrades, a second `make` in a fresh
    # clone) may hold its locks: wait for it, up to 10 minutes, instead of failing at once
    local tries=0 err
    while ! err=$(apt-get -o DPkg::Lock::Timeout=600 "$@" 2>&1 >/dev/null); do
      case "$err" in *"Could not get lock"*|*"Unable to lock"*) ;; *) echo "$err" >&2; return 1 ;; esac
      tries=$((tries + 1))
      [ "$tries" -ge 120 ] && { echo "$err" >&2; return 1; }
      [ "$tries" -eq 1 ] && echo "calmplace: waiting for another apt-get to finish..." >&2
      sleep 5
    done
  }
  apt_get update -qq && apt_get install -y -qq --no-install-recommends "${missing[@]}" || {
    echo "calmplace: apt-get install ${missing[*]} failed" >&2; exit 1; }
else
  echo "calmplace: missing system packages: ${missing[*]}" >&2
  echo "  install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
