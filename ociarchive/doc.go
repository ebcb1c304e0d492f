// Package ociarchive writes OCI image archives (an OCI image layout in a tar stream, with a
// docker-save style manifest.json beside it) from plain files, without a registry or a
// daemon.
//
// It exists so that tests and demos can make their images offline: an Image is a list of
// Files (regular files, directories and symlinks with their modes) and an image config; Write
// packs them into one gzip-compressed layer and writes the config, manifest, index.json,
// oci-layout and manifest.json. The result loads with `crun-ci import` (containerd's
// importer) and with `docker load`.
//
// Busybox builds the usual test image: the static busybox binary at /bin/busybox plus a
// symlink for each applet it lists, /etc/passwd and /etc/group, and the usual empty
// directories.
package ociarchive
