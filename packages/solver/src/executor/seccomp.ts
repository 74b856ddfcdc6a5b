/**
 * The seccomp filter of a RUN step on the runc backend (the OCI spec's `linux.seccomp`).
 *
 * Docker and BuildKit apply Docker's default profile: an allowlist whose effect, for a
 * process holding Docker's default capabilities, is to refuse a set of syscalls that
 * reach the kernel's global state (modules, keyrings, clocks, swap, reboot, kexec, bpf,
 * perf, handle-based opens, new namespaces, foreign address spaces, userfaultfd, …).
 * tsbuild states that effect directly as a denylist: every other syscall is allowed, each
 * listed one fails with EPERM (`clone3` with ENOSYS, so the C library falls back to
 * `clone`, whose namespace flags are refused one by one). So a step runs in seccomp
 * filter mode (`Seccomp: 2` in /proc/self/status) and nothing that works under
 * BuildKit's profile is refused here. What an allowlist adds over this — refusing
 * syscalls a future kernel introduces — is not covered; that is written in SECURITY.md.
 */

/** The OCI `linux.seccomp` object. */
export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ALLOW';
  architectures: string[];
  syscalls: { names: string[]; action: 'SCMP_ACT_ERRNO'; errnoRet: number; args?: { index: number; value: number; valueTwo: number; op: 'SCMP_CMP_MASKED_EQ' }[] }[];
}

const EPERM = 1;
const ENOSYS = 38;

/** Refused with EPERM whatever their arguments. */
export const DENIED_SYSCALLS: readonly string[] = [
  'acct', 'add_key', 'bpf', 'clock_adjtime', 'clock_settime', 'create_module', 'delete_module',
  'finit_module', 'fsconfig', 'fsmount', 'fsopen', 'fspick', 'get_kernel_syms', 'init_module',
  'ioperm', 'iopl', 'kcmp', 'kexec_file_load', 'kexec_load', 'keyctl', 'lookup_dcookie',
  'mount', 'mount_setattr', 'move_mount', 'name_to_handle_at', 'nfsservctl', 'open_by_handle_at',
  'open_tree', 'perf_event_open', 'pivot_root', 'process_vm_readv', 'process_vm_writev',
  'query_module', 'quotactl', 'quotactl_fd', 'reboot', 'request_key', 'setns', 'settimeofday',
  'stime', 'swapoff', 'swapon', 'sysfs', '_sysctl', 'umount', 'umount2', 'unshare', 'uselib',
  'userfaultfd', 'ustat', 'vm86', 'vm86old',
];

/** clone(2) flags that create namespaces: a clone asking for any of them is refused. */
export const NAMESPACE_CLONE_FLAGS: readonly number[] = [
  0x00020000, // CLONE_NEWNS
  0x02000000, // CLONE_NEWCGROUP
  0x04000000, // CLONE_NEWUTS
  0x08000000, // CLONE_NEWIPC
  0x10000000, // CLONE_NEWUSER
  0x20000000, // CLONE_NEWPID
  0x40000000, // CLONE_NEWNET
];

/** libseccomp architecture names for a Node `process.arch` (the native one first). */
function architectures(arch: string): string[] {
  switch (arch) {
    case 'x64':
      return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    case 'arm64':
      return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
    case 'arm':
      return ['SCMP_ARCH_ARM'];
    case 'ia32':
      return ['SCMP_ARCH_X86'];
    default:
      return [];
  }
}

/** The profile for this host's architecture. */
export function defaultSeccompProfile(arch: string = process.arch): SeccompProfile {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: architectures(arch),
    syscalls: [
      { names: [...DENIED_SYSCALLS], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
      // one rule per flag: the conditions of one rule are ANDed; (flags & f) == f for any f refuses
      ...NAMESPACE_CLONE_FLAGS.map((f) => ({ names: ['clone'], action: 'SCMP_ACT_ERRNO' as const, errnoRet: EPERM, args: [{ index: 0, value: f, valueTwo: f, op: 'SCMP_CMP_MASKED_EQ' as const }] })),
    ],
  };
}
