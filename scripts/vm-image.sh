#!/usr/bin/env bash
# Builds, as root, a Debian 12 VM image for crun-ci without downloading a box: a
# debootstrap of bookworm from the host's Debian mirror (the one apt uses) with the
# `vagrant` user and Vagrant's insecure public key, sudo, ssh, containerd, runc, the CNI
# plugins, iptables and busybox-static, and Debian's kernel (the standard one: the cloud
# kernel has no 9p, which the synced checkout needs); the root file system
# as a qcow2 disk (ext4, no partition table: the kernel and initramfs boot it directly),
# and from it a libvirt Vagrant box.
#
# Cached: nothing is rebuilt while the cache's stamp matches this script. Output in
# $CRUNCI_VM_CACHE (default /var/cache/crun-ci/vm): disk.qcow2, vmlinuz, initrd.img,
# vagrant (the insecure private key), crun-ci-debian12.box.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "vm-image: run as root (debootstrap, chroot)" >&2
	exit 2
fi
cache=${CRUNCI_VM_CACHE:-/var/cache/crun-ci/vm}
mirror=${CRUNCI_VM_MIRROR:-$(awk '/^URIs:/ { print $2; exit } /^deb / { print $2; exit }' /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
stamp=$(sha256sum "$0" | cut -c1-16)
if [ -f "$cache/stamp" ] && [ "$(cat "$cache/stamp")" = "$stamp" ]; then
	echo "vm-image: cached in $cache" >&2
	exit 0
fi

missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v qemu-img >/dev/null || missing+=(qemu-utils)
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
if [ "${#missing[@]}" -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

began=$(date +%s)
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
root=$work/root
cleanup() {
	for m in dev/pts dev proc sys; do
		umount "$root/$m" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

packages=systemd-sysv,udev,openssh-server,sudo,containerd,runc,containernetworking-plugins,iptables,busybox-static,ca-certificates,git,iproute2,kmod,linux-image-amd64,initramfs-tools
echo "vm-image: debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -20 "$work/debootstrap.log" >&2
	exit 1
}

# The vagrant user, with Vagrant's well-known insecure key (a key pair of our own: the
# Vagrantfile names its private half), password-less sudo.
ssh-keygen -q -t ed25519 -N '' -C vagrant -f "$work/vagrant"
chroot "$root" useradd -m -s /bin/bash vagrant
install -d -m 700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 600 -o 1000 -g 1000 "$work/vagrant.pub" "$root/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/vagrant"
chmod 440 "$root/etc/sudoers.d/vagrant"
echo crun-ci-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 crun-ci-vm\n' >"$root/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$root/etc/fstab"
# The first interface by DHCP (qemu's user network, libvirt's default network).
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/10-dhcp.network"
chroot "$root" systemctl enable systemd-networkd ssh containerd >/dev/null 2>&1
# qemu's user network answers DNS there (the pipelines of scripts/vm-test.sh need none).
echo 'nameserver 10.0.2.3' >"$root/etc/resolv.conf"
# The synced checkout (9p under qemu, Vagrant's own sync under libvirt) and SSH without
# waiting on DNS.
printf 'virtio\nvirtio_pci\nvirtio_blk\nvirtio_net\n9p\n9pnet\n9pnet_virtio\next4\n' >>"$root/etc/initramfs-tools/modules"
# Only those in the initramfs: a small one boots faster under emulation.
sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
echo 'UseDNS no' >"$root/etc/ssh/sshd_config.d/crun-ci.conf"
mount --bind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
chroot "$root" update-initramfs -u -k all >/dev/null
umount "$root/sys" "$root/proc" "$root/dev"
chroot "$root" apt-get clean

cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
cp "$root"/boot/initrd.img-* "$work/initrd.img"
size=$((4 * 1024))M
mkfs.ext4 -q -L root -d "$root" "$work/disk.raw" "$size"
qemu-img convert -O qcow2 "$work/disk.raw" "$work/disk.qcow2"

# The libvirt box: box.img, metadata.json and a Vagrantfile of the box's defaults.
box=$work/box
mkdir -p "$box"
cp "$work/disk.qcow2" "$box/box.img"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":4}\n' >"$box/metadata.json"
cat >"$box/Vagrantfile" <<'VF'
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"
  end
end
VF
tar -C "$box" -czf "$work/crun-ci-debian12.box" box.img metadata.json Vagrantfile

for f in disk.qcow2 vmlinuz initrd.img vagrant vagrant.pub crun-ci-debian12.box; do
	mv "$work/$f" "$cache/$f"
done
echo "$stamp" >"$cache/stamp"
echo "vm-image: built $cache in $(($(date +%s) - began))s" >&2
