// Package pod starts and stops every container crun-ci runs: a step's (its service's and
// its dependencies'), a credential service's, and each RUN of an image build. It is the
// one place that gives a container its network, its secret hand-off and its stop policy,
// and the one that has containerd create containers and tasks.
//
// Words:
//   - A pod is the containers that run together on one network: a step's, a credential
//     service's one, an image build's RUNs one after the other. In Bridge mode each
//     member has a namespace and address of its own on the pod's step network (see
//     package network), and the pod's one hosts file, mounted into every member, gets
//     each member's names as it is made. It has a directory of its own below the
//     build's, holding its hosts and resolv.conf files and its secret hand-offs, and
//     whatever its caller keeps there (a step's anonymous volumes). Close deletes its containers, then its network, then the directory.
//   - A member is one container of a pod: created on a fresh snapshot of its image (or
//     on one its caller prepared), started, waited for, stopped, deleted.
//   - The hand-off: a member with secret variables runs `crun-ci exec-env` (crun-ci's own
//     static executable, mounted read-only), which reads them from a FIFO the pod holds
//     open, then becomes the member's command (see secrets.Handoff). They never reach
//     the runtime spec that containerd keeps on disk.
//   - The stop policy: the member's stop signal (the service's stop_signal, else its
//     image's STOPSIGNAL, else SIGTERM), then, after a grace period, SIGKILL. When crun-ci
//     waits out a grace period, it says so on stderr.
package pod
