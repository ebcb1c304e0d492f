// Package steps runs a pipeline: it filters the step tree by the build's tag, checks every
// precondition of the steps that will run, then runs them, serial groups in order and
// parallel groups concurrently, each run step on fresh containers, and collects a result
// per step.
//
// Words:
//   - A build is one run of a pipeline. It has an id; every container, snapshot and lease
//     it makes carries that id in the label crun-ci.build, and its working files live in
//     <state>/builds/<id>.
//   - A step is a node of the steps file: a run step (a command in a service), a push
//     step, or a serial or parallel group of steps.
//   - A step's containers are its service's, those of every service in its depends_on
//     and links (its dependencies), and those of every service named in volumes_from,
//     all transitively. Dependencies are started, in their order, each when what it needs
//     is ready (started, healthy or completed); volumes_from sources that are not
//     dependencies get no container, only their anonymous volumes.
//
// The rules: a serial group (and the top level) stops at its first failing step; a
// parallel group runs all its children, at most MaxParallel run steps at a time, and fails
// if any failed; a failed step's on_fail steps run next and never turn the failure into
// success. Tag and exclude patterns match the build's tag: a plain string exactly, a string
// holding "^" or "$" as an unanchored regular expression; exclude wins; without a tag,
// steps with a tag are skipped.
//
// Containerd is reached through the Runtime interface; Containerd adapts *task.Client.
package steps
