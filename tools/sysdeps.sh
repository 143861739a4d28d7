#!/usr/bin/env bash
# Install the system packages calmplace needs, or say what to install.
#   espeak-ng, libespeak-ng1: the speech engine pyttsx3 drives on Linux
#   ffmpeg: phone recordings (m4a/aac through pydub) and the independent measurements in tests
#   poppler-utils: pdftotext/pdftoppm, to read back and look at the PDFs in tests
set -u
case "$(uname -s)" in
  Linux) ;;
  *) exit 0 ;;  # macOS/Windows: pyttsx3 uses the native driver (nsss, sapi5); nothing to install
esac
missing=()
ldconfig -p 2>/dev/null | grep -q 'libespeak-ng\.so\.1' || missing+=(libespeak-ng1)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v pdftotext >/dev/null || missing+=(poppler-utils)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "calmplace: installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
    echo "calmplace: apt-get install ${missing[*]} failed" >&2; exit 1; }
else
  echo "calmplace: missing system packages: ${missing[*]}" >&2
  echo "  install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
