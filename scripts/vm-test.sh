#!/usr/bin/env bash
# Runs crun-ci inside a Debian 12 VM, as the Vagrant users do, and destroys the VM: the
# image from scripts/vm-image.sh (cached), booted with qemu directly (see below), the
# checkout shared into the VM at /vagrant (virtio-9p, as Vagrant's synced folder is),
# bin/crun-ci run there on the VM's own containerd (Debian's, under systemd) for the
# examples' volume, host-volume and dependency pipelines; the host volume's file must
# arrive back in the checkout. Prints `vm: N pipelines passed`, or fails. As root.
#
# Through `vagrant up --provider libvirt` (the default: Debian's vagrant and
# vagrant-libvirt, installed when missing; libvirtd and virtlogd started when none runs,
# as there is no systemd here, and stopped after), or with CRUNCI_VM_PROVIDER=qemu,
# through qemu directly with the same disk, kernel and 9p share (no libvirt at all).
# Under libvirt, the VM's provisioning (the Vagrantfile) runs the pipelines; qemu runs
# as root for the 9p share to be writable as the guest's root (qemu.conf is restored
# after). Nothing is left: no domain, network, storage volume, box or process.
#
# Accelerator: KVM when a guest boots under it here (probed once, the answer cached),
# else qemu's emulation (TCG). CRUNCI_VM_ACCEL=kvm|tcg skips the probe.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "vm: run as root" >&2
	exit 2
fi
began=$(date +%s)
setup_log=$(mktemp)
bash scripts/setup.sh >"$setup_log" 2>&1 || { cat "$setup_log" >&2; rm -f "$setup_log"; exit 1; }
rm -f "$setup_log"
provider=${CRUNCI_VM_PROVIDER:-libvirt}
want=()
command -v qemu-system-x86_64 >/dev/null || want+=(qemu-system-x86 qemu-utils)
if [ "$provider" = libvirt ]; then
	command -v vagrant >/dev/null || want+=(vagrant)
	[ -d /usr/share/rubygems-integration/all/gems ] && ls /usr/share/rubygems-integration/all/gems | grep -q vagrant-libvirt || want+=(vagrant-libvirt)
	command -v libvirtd >/dev/null || want+=(libvirt-daemon-system)
fi
if [ "${#want[@]}" -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
fi
bash scripts/vm-image.sh
cache=${CRUNCI_VM_CACHE:-/var/cache/crun-ci/vm}
imaged=$(date +%s)

# came_back checks that the file the host-volume pipeline wrote in the VM is in the
# checkout.
stamp=examples/host-volumes/tmp/artifacts/build-stamp
came_back() {
	if [ ! -s "$stamp" ]; then
		echo "vm: $stamp did not arrive back in the checkout" >&2
		exit 1
	fi
	echo "vm: $stamp came back: $(cat "$stamp")" >&2
}
rm -f "$stamp"

run=$(mktemp -d /tmp/crun-ci-vm.XXXXXX)
port=$((20000 + RANDOM % 20000))
qemu_pid=
destroy() {
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$qemu_pid" 2>/dev/null || true
	fi
	rm -rf "$run"
}
trap destroy EXIT

# boot starts the VM with accelerator $1 on a copy-on-write layer of the image.
boot() {
	rm -f "$run/disk.qcow2" "$run/console.log" "$run/qemu.pid"
	qemu-img create -q -f qcow2 -b "$cache/disk.qcow2" -F qcow2 "$run/disk.qcow2"
	local cpu=max
	[ "$1" = kvm ] && cpu=host
	qemu-system-x86_64 -machine q35,accel="$1" -cpu "$cpu" -smp 2 -m 2048 \
		-kernel "$cache/vmlinuz" -initrd "$cache/initrd.img" \
		-append "root=/dev/vda rw console=ttyS0 panic=-1" -no-reboot \
		-drive file="$run/disk.qcow2",if=virtio,format=qcow2 \
		-netdev user,id=n0,hostfwd=tcp:127.0.0.1:"$port"-:22 -device virtio-net-pci,netdev=n0 \
		-virtfs local,path="$PWD",mount_tag=vagrant,security_model=passthrough,id=fs0 \
		-display none -serial file:"$run/console.log" -daemonize -pidfile "$run/qemu.pid"
	qemu_pid=$(cat "$run/qemu.pid")
}

accel=${CRUNCI_VM_ACCEL:-}
if [ -z "$accel" ] && [ -f "$cache/accel" ]; then
	accel=$(cat "$cache/accel")
fi
if [ -z "$accel" ]; then
	accel=tcg
	if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		qemu_pid=
		boot kvm 2>"$run/kvm.log" || true
		for _ in $(seq 200); do
			[ -n "$qemu_pid" ] || break
			grep -q "Run /init as init process" "$run/console.log" 2>/dev/null && { accel=kvm; break; }
			sleep 0.1
		done
		[ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
		sleep 0.5
	fi
	echo "$accel" >"$cache/accel"
	echo "vm: a guest $([ "$accel" = kvm ] && echo boots || echo does not boot) under KVM here: using $accel" >&2
fi

if [ "$provider" = libvirt ]; then
	virsh=(virsh -q -c qemu:///system)
	started=()
	conf=/etc/libvirt/qemu.conf
	cp "$conf" "$run/qemu.conf"
	stop_libvirt() {
		local d
		for d in "${started[@]}"; do pkill -x "$d" 2>/dev/null || true; done
	}
	undo() {
		VAGRANT_CWD="$PWD" vagrant destroy -f >/dev/null 2>&1 || true
		vagrant box remove -f crun-ci/debian12 >/dev/null 2>&1 || true
		for v in $("${virsh[@]}" vol-list default 2>/dev/null | awk '/crun-ci-VAGRANTSLASH-debian12/ { print $1 }'); do
			"${virsh[@]}" vol-delete --pool default "$v" >/dev/null || true
		done
		for n in $("${virsh[@]}" net-list --all --name 2>/dev/null); do
			grep -qx "$n" "$run/nets" || { "${virsh[@]}" net-destroy "$n" >/dev/null 2>&1; "${virsh[@]}" net-undefine "$n" >/dev/null 2>&1; } || true
		done
		for p in $("${virsh[@]}" pool-list --all --name 2>/dev/null); do
			grep -qx "$p" "$run/pools" || { "${virsh[@]}" pool-destroy "$p" >/dev/null 2>&1; "${virsh[@]}" pool-undefine "$p" >/dev/null 2>&1; } || true
		done
		cp "$run/qemu.conf" "$conf"
		stop_libvirt
		rm -rf .vagrant
		destroy
	}
	trap undo EXIT
	printf 'user = "root"\ngroup = "root"\n' >>"$conf"
	pkill -x libvirtd 2>/dev/null && sleep 1 || true
	mkdir -p /run/libvirt
	pgrep -x virtlogd >/dev/null || { virtlogd -d; started+=(virtlogd); }
	libvirtd -d
	started+=(libvirtd)
	for _ in $(seq 50); do "${virsh[@]}" list >/dev/null 2>&1 && break; sleep 0.2; done
	"${virsh[@]}" net-list --all --name >"$run/nets"
	"${virsh[@]}" pool-list --all --name >"$run/pools"
	vagrant box add -f --name crun-ci/debian12 "$cache/crun-ci-debian12.box" >/dev/null
	export CRUNCI_VM_ACCEL=$accel
	if ! vagrant up --provider libvirt >"$run/up.log" 2>&1; then
		tail -40 "$run/up.log" >&2
		echo "vm: vagrant up --provider libvirt failed" >&2
		exit 1
	fi
	booted=$(date +%s)
	sed -n 's/^    default: //p' "$run/up.log" | grep -E "passed in|FAILED|build-stamp" >&2 || true
	passed=$(grep -cE '^    default: [0-9]+ passed in ' "$run/up.log" || true)
	came_back
	vagrant ssh -c 'sudo crun-ci cleanup --dry-run' 2>/dev/null | grep -q "nothing to clean up"
	vagrant destroy -f >/dev/null
	domains=$("${virsh[@]}" list --all --name)
	if [ -n "$domains" ]; then
		echo "vm: libvirt domains left: $domains" >&2
		exit 1
	fi
	done_at=$(date +%s)
	echo "vm: libvirt ($accel); image $((imaged - began))s, up and provisioned $((booted - imaged))s, destroyed $((done_at - booted))s" >&2
	if [ "$passed" -ne 3 ]; then
		echo "vm: $passed pipelines passed, want 3" >&2
		exit 1
	fi
	echo "vm: $passed pipelines passed"
	exit 0
fi

boot "$accel"
ssh_opts=(-i "$cache/vagrant" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5 -o BatchMode=yes)
vm() { ssh "${ssh_opts[@]}" vagrant@127.0.0.1 "$@"; }
up=
for _ in $(seq 120); do
	if vm true 2>/dev/null; then up=1; break; fi
	kill -0 "$qemu_pid" 2>/dev/null || break
	sleep 2
done
if [ -z "$up" ]; then
	echo "vm: no ssh after 240 s; the console said:" >&2
	tail -20 "$run/console.log" >&2
	exit 1
fi
booted=$(date +%s)
echo "vm: up in $((booted - imaged))s ($accel)" >&2

bin/mkimage -o bin/vm-busybox.tar
vm sudo bash -euo pipefail -s <<'IN'
mkdir -p /vagrant
mountpoint -q /vagrant || mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 vagrant /vagrant
for _ in $(seq 60); do [ -S /run/containerd/containerd.sock ] && break; sleep 1; done
cd /vagrant
bin/crun-ci import bin/vm-busybox.tar
IN
rm -f bin/vm-busybox.tar
passed=0
for ex in volumes host-volumes dependencies; do
	echo "== vm: examples/$ex" >&2
	vm sudo /vagrant/bin/crun-ci steps --dir "/vagrant/examples/$ex" --stop-timeout 1s
	passed=$((passed + 1))
done
came_back
vm sudo /vagrant/bin/crun-ci cleanup --dry-run | grep -q "nothing to clean up"
vm sudo poweroff >/dev/null 2>&1 || true
for _ in $(seq 100); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.2; done
done_at=$(date +%s)
echo "vm: image $((imaged - began))s, boot $((booted - imaged))s, pipelines $((done_at - booted))s" >&2
echo "vm: $passed pipelines passed"
