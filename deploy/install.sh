#!/bin/sh
# Installs (or updates in place) the streamfleet agent on a Linux board with systemd.
#
#   sudo ./install.sh --redis-url redis://10.0.0.5:6379            # on the board, from the unpacked dist/bin
#   sudo ./install.sh --root /mnt/sdroot --target linux-arm64 ...  # into a mounted SD-card image
#
# Options:
#   --binary FILE         agent executable (default: streamfleet-agent-<target> beside this script)
#   --target T            linux-x64 | linux-arm64 | linux-armv7l (default: from uname -m)
#   --device-id ID        fixed device id; without it the id is the board's hostname
#   --device-id-from S    hostname | machine-id: where a board takes its id when none is given
#   --redis-url URL       written into a new config
#   --root DIR            install into a root filesystem image instead of this machine (no start)
#   --no-start            install, enable, but do not (re)start the service
#
# An existing /etc/streamfleet/agent.yaml is never overwritten: updating re-runs this script
# with a new binary; the running agent keeps its old file until the restart at the end,
# then continues its sequence and journal from /var/lib/streamfleet-agent.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
binary= target= device_id= id_from=hostname redis_url= root= start=yes

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --device-id) device_id=$2; shift 2 ;;
    --device-id-from) id_from=$2; shift 2 ;;
    --redis-url) redis_url=$2; shift 2 ;;
    --root) root=${2%/}; start=no; shift 2 ;;
    --no-start) start=no; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "install.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (sudo)"

if [ -z "$target" ]; then
  [ -z "$root" ] || die "--root needs --target (the image's architecture is not this machine's)"
  case "$(uname -m)" in
    x86_64) target=linux-x64 ;;
    aarch64|arm64) target=linux-arm64 ;;
    armv7l|armv8l) target=linux-armv7l ;;
    *) die "no agent binary for $(uname -m) (armv6 boards such as the Pi Zero 1 are not supported)" ;;
  esac
fi
case "$target" in linux-x64|linux-arm64|linux-armv7l) ;; *) die "unknown target $target" ;; esac
[ -n "$binary" ] || binary="$here/streamfleet-agent-$target"
[ -f "$binary" ] || die "binary $binary not found"
case "$id_from" in hostname) id_spec=%H ;; machine-id) id_spec=%m ;; *) die "--device-id-from: hostname or machine-id" ;; esac

bin_dir="$root/usr/local/bin"
etc_dir="$root/etc/streamfleet"
unit_dir="$root/etc/systemd/system"
state_dir="$root/var/lib/streamfleet-agent"

# 1. Service user: no login, no home beyond its state directory.
if [ -n "$root" ]; then ua_root="--root $root"; else ua_root=; fi
# shellcheck disable=SC2086
if ! grep -q '^streamfleet:' "$root/etc/passwd" 2>/dev/null; then
  useradd $ua_root --system --user-group --home-dir /var/lib/streamfleet-agent --no-create-home \
    --shell /usr/sbin/nologin --comment "streamfleet agent" streamfleet
fi
uid=$(grep '^streamfleet:' "$root/etc/passwd" | cut -d: -f3)
gid=$(grep '^streamfleet:' "$root/etc/passwd" | cut -d: -f4)

# 2. Binary: copied beside the old one, then renamed over it (atomic; a running agent keeps its file).
mkdir -p "$bin_dir"
install -m 0755 "$binary" "$bin_dir/.streamfleet-agent.new"
mv -f "$bin_dir/.streamfleet-agent.new" "$bin_dir/streamfleet-agent"

# 3. Config: the commented example always refreshed; the live config written once.
mkdir -p "$etc_dir"
if [ -f "$here/agent.example.yaml" ]; then
  install -m 0644 "$here/agent.example.yaml" "$etc_dir/agent.example.yaml"
fi
if [ ! -f "$etc_dir/agent.yaml" ]; then
  {
    echo "# streamfleet agent config, written by install.sh. Every option: agent.example.yaml beside it."
    if [ -n "$device_id" ]; then echo "device.id: \"$device_id\""; fi
    echo "device.dataDir: /var/lib/streamfleet-agent"
    if [ -n "$redis_url" ]; then echo "redis.url: \"$redis_url\""; else echo "# redis.url: \"redis://127.0.0.1:6379\""; fi
  } > "$etc_dir/agent.yaml.new"
  chown "0:$gid" "$etc_dir/agent.yaml.new"
  chmod 0640 "$etc_dir/agent.yaml.new"
  mv -f "$etc_dir/agent.yaml.new" "$etc_dir/agent.yaml"
fi

# 4. State directory (sequence file, journal) on persistent storage; systemd also ensures it.
mkdir -p "$state_dir"
chown "$uid:$gid" "$state_dir"
chmod 0750 "$state_dir"

# 5. Unit, and the device id drop-in when no fixed id is configured.
mkdir -p "$unit_dir"
install -m 0644 "$here/streamfleet-agent.service" "$unit_dir/streamfleet-agent.service"
dropin="$unit_dir/streamfleet-agent.service.d"
if grep -q '^device.id:' "$etc_dir/agent.yaml"; then
  rm -f "$dropin/device-id.conf"
else
  # systemd fills in the board's own hostname (%H) or machine id (%m) at start.
  mkdir -p "$dropin"
  printf '[Service]\nEnvironment=AGENT_DEVICE_ID=%s\n' "$id_spec" > "$dropin/device-id.conf"
fi

# Node 20.11 (the armv7l binary) cannot carry V8 flags in the executable: give it the heap flags here.
if [ "$target" = linux-armv7l ]; then
  mkdir -p "$dropin"
  printf '[Service]\nEnvironment="NODE_OPTIONS=--max-semi-space-size=1 --max-old-space-size=96"\n' > "$dropin/node-options.conf"
else
  rm -f "$dropin/node-options.conf"
fi

if [ -n "$root" ]; then
  systemctl --root="$root" enable streamfleet-agent.service >/dev/null 2>&1 ||
    { mkdir -p "$unit_dir/multi-user.target.wants" &&
      ln -sf /etc/systemd/system/streamfleet-agent.service "$unit_dir/multi-user.target.wants/streamfleet-agent.service"; }
  echo "installed $target agent into $root (starts on the board's next boot)"
  exit 0
fi
systemctl daemon-reload
systemctl enable streamfleet-agent.service >/dev/null
if [ "$start" = yes ]; then
  systemctl restart streamfleet-agent.service
  echo "streamfleet-agent ($("$bin_dir/streamfleet-agent" --version)) running: journalctl -u streamfleet-agent -f"
else
  echo "streamfleet-agent installed and enabled; start it with: systemctl start streamfleet-agent"
fi
