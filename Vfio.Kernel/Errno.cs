// Models include/uapi/asm-generic/errno-base.h, include/uapi/asm-generic/errno.h and
// include/linux/errno.h (v6.12): error numbers as the x86-64 kernel returns them.

namespace Vfio.Kernel;

/// <summary>
/// Linux error numbers, with the kernel's names and values. Simulated kernel code returns
/// them (syscalls return the negated value, as raw syscalls do). Aliases that share a
/// number in Linux (<c>EWOULDBLOCK</c> = <see cref="EAGAIN"/>, <c>EDEADLOCK</c> =
/// <see cref="EDEADLK"/>, <c>ENOTSUP</c> = <see cref="EOPNOTSUPP"/>) are not separate members
/// so that every value has exactly one name.
/// </summary>
public enum Errno
{
    /// <summary>No error (the kernel's 0).</summary>
    None = 0,
    /// <summary>1: Operation not permitted.</summary>
    EPERM = 1,
    /// <summary>2: No such file or directory.</summary>
    ENOENT = 2,
    /// <summary>3: No such process.</summary>
    ESRCH = 3,
    /// <summary>4: Interrupted system call.</summary>
    EINTR = 4,
    /// <summary>5: Input/output error.</summary>
    EIO = 5,
    /// <summary>6: No such device or address.</summary>
    ENXIO = 6,
    /// <summary>7: Argument list too long.</summary>
    E2BIG = 7,
    /// <summary>8: Exec format error.</summary>
    ENOEXEC = 8,
    /// <summary>9: Bad file descriptor.</summary>
    EBADF = 9,
    /// <summary>10: No child processes.</summary>
    ECHILD = 10,
    /// <summary>11: Resource temporarily unavailable.</summary>
    EAGAIN = 11,
    /// <summary>12: Cannot allocate memory.</summary>
    ENOMEM = 12,
    /// <summary>13: Permission denied.</summary>
    EACCES = 13,
    /// <summary>14: Bad address.</summary>
    EFAULT = 14,
    /// <summary>15: Block device required.</summary>
    ENOTBLK = 15,
    /// <summary>16: Device or resource busy.</summary>
    EBUSY = 16,
    /// <summary>17: File exists.</summary>
    EEXIST = 17,
    /// <summary>18: Invalid cross-device link.</summary>
    EXDEV = 18,
    /// <summary>19: No such device.</summary>
    ENODEV = 19,
    /// <summary>20: Not a directory.</summary>
    ENOTDIR = 20,
    /// <summary>21: Is a directory.</summary>
    EISDIR = 21,
    /// <summary>22: Invalid argument.</summary>
    EINVAL = 22,
    /// <summary>23: Too many open files in system.</summary>
    ENFILE = 23,
    /// <summary>24: Too many open files.</summary>
    EMFILE = 24,
    /// <summary>25: Inappropriate ioctl for device.</summary>
    ENOTTY = 25,
    /// <summary>26: Text file busy.</summary>
    ETXTBSY = 26,
    /// <summary>27: File too large.</summary>
    EFBIG = 27,
    /// <summary>28: No space left on device.</summary>
    ENOSPC = 28,
    /// <summary>29: Illegal seek.</summary>
    ESPIPE = 29,
    /// <summary>30: Read-only file system.</summary>
    EROFS = 30,
    /// <summary>31: Too many links.</summary>
    EMLINK = 31,
    /// <summary>32: Broken pipe.</summary>
    EPIPE = 32,
    /// <summary>33: Numerical argument out of domain.</summary>
    EDOM = 33,
    /// <summary>34: Numerical result out of range.</summary>
    ERANGE = 34,
    /// <summary>35: Resource deadlock avoided.</summary>
    EDEADLK = 35,
    /// <summary>36: File name too long.</summary>
    ENAMETOOLONG = 36,
    /// <summary>37: No locks available.</summary>
    ENOLCK = 37,
    /// <summary>38: Function not implemented.</summary>
    ENOSYS = 38,
    /// <summary>39: Directory not empty.</summary>
    ENOTEMPTY = 39,
    /// <summary>40: Too many levels of symbolic links.</summary>
    ELOOP = 40,
    /// <summary>42: No message of desired type.</summary>
    ENOMSG = 42,
    /// <summary>43: Identifier removed.</summary>
    EIDRM = 43,
    /// <summary>44: Channel number out of range.</summary>
    ECHRNG = 44,
    /// <summary>45: Level 2 not synchronized.</summary>
    EL2NSYNC = 45,
    /// <summary>46: Level 3 halted.</summary>
    EL3HLT = 46,
    /// <summary>47: Level 3 reset.</summary>
    EL3RST = 47,
    /// <summary>48: Link number out of range.</summary>
    ELNRNG = 48,
    /// <summary>49: Protocol driver not attached.</summary>
    EUNATCH = 49,
    /// <summary>50: No CSI structure available.</summary>
    ENOCSI = 50,
    /// <summary>51: Level 2 halted.</summary>
    EL2HLT = 51,
    /// <summary>52: Invalid exchange.</summary>
    EBADE = 52,
    /// <summary>53: Invalid request descriptor.</summary>
    EBADR = 53,
    /// <summary>54: Exchange full.</summary>
    EXFULL = 54,
    /// <summary>55: No anode.</summary>
    ENOANO = 55,
    /// <summary>56: Invalid request code.</summary>
    EBADRQC = 56,
    /// <summary>57: Invalid slot.</summary>
    EBADSLT = 57,
    /// <summary>59: Bad font file format.</summary>
    EBFONT = 59,
    /// <summary>60: Device not a stream.</summary>
    ENOSTR = 60,
    /// <summary>61: No data available.</summary>
    ENODATA = 61,
    /// <summary>62: Timer expired.</summary>
    ETIME = 62,
    /// <summary>63: Out of streams resources.</summary>
    ENOSR = 63,
    /// <summary>64: Machine is not on the network.</summary>
    ENONET = 64,
    /// <summary>65: Package not installed.</summary>
    ENOPKG = 65,
    /// <summary>66: Object is remote.</summary>
    EREMOTE = 66,
    /// <summary>67: Link has been severed.</summary>
    ENOLINK = 67,
    /// <summary>68: Advertise error.</summary>
    EADV = 68,
    /// <summary>69: Srmount error.</summary>
    ESRMNT = 69,
    /// <summary>70: Communication error on send.</summary>
    ECOMM = 70,
    /// <summary>71: Protocol error.</summary>
    EPROTO = 71,
    /// <summary>72: Multihop attempted.</summary>
    EMULTIHOP = 72,
    /// <summary>73: RFS specific error.</summary>
    EDOTDOT = 73,
    /// <summary>74: Bad message.</summary>
    EBADMSG = 74,
    /// <summary>75: Value too large for defined data type.</summary>
    EOVERFLOW = 75,
    /// <summary>76: Name not unique on network.</summary>
    ENOTUNIQ = 76,
    /// <summary>77: File descriptor in bad state.</summary>
    EBADFD = 77,
    /// <summary>78: Remote address changed.</summary>
    EREMCHG = 78,
    /// <summary>79: Can not access a needed shared library.</summary>
    ELIBACC = 79,
    /// <summary>80: Accessing a corrupted shared library.</summary>
    ELIBBAD = 80,
    /// <summary>81: .lib section in a.out corrupted.</summary>
    ELIBSCN = 81,
    /// <summary>82: Attempting to link in too many shared libraries.</summary>
    ELIBMAX = 82,
    /// <summary>83: Cannot exec a shared library directly.</summary>
    ELIBEXEC = 83,
    /// <summary>84: Invalid or incomplete multibyte or wide character.</summary>
    EILSEQ = 84,
    /// <summary>85: Interrupted system call should be restarted.</summary>
    ERESTART = 85,
    /// <summary>86: Streams pipe error.</summary>
    ESTRPIPE = 86,
    /// <summary>87: Too many users.</summary>
    EUSERS = 87,
    /// <summary>88: Socket operation on non-socket.</summary>
    ENOTSOCK = 88,
    /// <summary>89: Destination address required.</summary>
    EDESTADDRREQ = 89,
    /// <summary>90: Message too long.</summary>
    EMSGSIZE = 90,
    /// <summary>91: Protocol wrong type for socket.</summary>
    EPROTOTYPE = 91,
    /// <summary>92: Protocol not available.</summary>
    ENOPROTOOPT = 92,
    /// <summary>93: Protocol not supported.</summary>
    EPROTONOSUPPORT = 93,
    /// <summary>94: Socket type not supported.</summary>
    ESOCKTNOSUPPORT = 94,
    /// <summary>95: Operation not supported.</summary>
    EOPNOTSUPP = 95,
    /// <summary>96: Protocol family not supported.</summary>
    EPFNOSUPPORT = 96,
    /// <summary>97: Address family not supported by protocol.</summary>
    EAFNOSUPPORT = 97,
    /// <summary>98: Address already in use.</summary>
    EADDRINUSE = 98,
    /// <summary>99: Cannot assign requested address.</summary>
    EADDRNOTAVAIL = 99,
    /// <summary>100: Network is down.</summary>
    ENETDOWN = 100,
    /// <summary>101: Network is unreachable.</summary>
    ENETUNREACH = 101,
    /// <summary>102: Network dropped connection on reset.</summary>
    ENETRESET = 102,
    /// <summary>103: Software caused connection abort.</summary>
    ECONNABORTED = 103,
    /// <summary>104: Connection reset by peer.</summary>
    ECONNRESET = 104,
    /// <summary>105: No buffer space available.</summary>
    ENOBUFS = 105,
    /// <summary>106: Transport endpoint is already connected.</summary>
    EISCONN = 106,
    /// <summary>107: Transport endpoint is not connected.</summary>
    ENOTCONN = 107,
    /// <summary>108: Cannot send after transport endpoint shutdown.</summary>
    ESHUTDOWN = 108,
    /// <summary>109: Too many references: cannot splice.</summary>
    ETOOMANYREFS = 109,
    /// <summary>110: Connection timed out.</summary>
    ETIMEDOUT = 110,
    /// <summary>111: Connection refused.</summary>
    ECONNREFUSED = 111,
    /// <summary>112: Host is down.</summary>
    EHOSTDOWN = 112,
    /// <summary>113: No route to host.</summary>
    EHOSTUNREACH = 113,
    /// <summary>114: Operation already in progress.</summary>
    EALREADY = 114,
    /// <summary>115: Operation now in progress.</summary>
    EINPROGRESS = 115,
    /// <summary>116: Stale file handle.</summary>
    ESTALE = 116,
    /// <summary>117: Structure needs cleaning.</summary>
    EUCLEAN = 117,
    /// <summary>118: Not a XENIX named type file.</summary>
    ENOTNAM = 118,
    /// <summary>119: No XENIX semaphores available.</summary>
    ENAVAIL = 119,
    /// <summary>120: Is a named type file.</summary>
    EISNAM = 120,
    /// <summary>121: Remote I/O error.</summary>
    EREMOTEIO = 121,
    /// <summary>122: Disk quota exceeded.</summary>
    EDQUOT = 122,
    /// <summary>123: No medium found.</summary>
    ENOMEDIUM = 123,
    /// <summary>124: Wrong medium type.</summary>
    EMEDIUMTYPE = 124,
    /// <summary>125: Operation canceled.</summary>
    ECANCELED = 125,
    /// <summary>126: Required key not available.</summary>
    ENOKEY = 126,
    /// <summary>127: Key has expired.</summary>
    EKEYEXPIRED = 127,
    /// <summary>128: Key has been revoked.</summary>
    EKEYREVOKED = 128,
    /// <summary>129: Key was rejected by service.</summary>
    EKEYREJECTED = 129,
    /// <summary>130: Owner died.</summary>
    EOWNERDEAD = 130,
    /// <summary>131: State not recoverable.</summary>
    ENOTRECOVERABLE = 131,
    /// <summary>132: Operation not possible due to RF-kill.</summary>
    ERFKILL = 132,
    /// <summary>133: Memory page has hardware error.</summary>
    EHWPOISON = 133,
    /// <summary>512: Restart the system call (kernel-internal; user space sees EINTR or a restart).</summary>
    ERESTARTSYS = 512,
    /// <summary>513: Restart the system call unconditionally (kernel-internal).</summary>
    ERESTARTNOINTR = 513,
    /// <summary>514: Restart if no signal handler (kernel-internal).</summary>
    ERESTARTNOHAND = 514,
    /// <summary>515: No ioctl command (kernel-internal; user space sees ENOTTY).</summary>
    ENOIOCTLCMD = 515,
    /// <summary>516: Restart by calling sys_restart_syscall (kernel-internal).</summary>
    ERESTART_RESTARTBLOCK = 516,
    /// <summary>517: Driver requests probe retry (kernel-internal).</summary>
    EPROBE_DEFER = 517,
    /// <summary>518: Open found a stale dentry (kernel-internal).</summary>
    EOPENSTALE = 518,
    /// <summary>519: Parameter not supported (kernel-internal).</summary>
    ENOPARAM = 519,
    /// <summary>521: Illegal NFS file handle (kernel-internal).</summary>
    EBADHANDLE = 521,
    /// <summary>522: Update synchronization mismatch (kernel-internal).</summary>
    ENOTSYNC = 522,
    /// <summary>523: Cookie is stale (kernel-internal).</summary>
    EBADCOOKIE = 523,
    /// <summary>524: Operation is not supported (kernel-internal).</summary>
    ENOTSUPP = 524,
    /// <summary>525: Buffer or request is too small (kernel-internal).</summary>
    ETOOSMALL = 525,
    /// <summary>526: An untranslatable error occurred (kernel-internal).</summary>
    ESERVERFAULT = 526,
    /// <summary>527: Type not supported by server (kernel-internal).</summary>
    EBADTYPE = 527,
    /// <summary>528: Request initiated, but will not complete before timeout (kernel-internal).</summary>
    EJUKEBOX = 528,
    /// <summary>529: iocb queued, will get completion event (kernel-internal).</summary>
    EIOCBQUEUED = 529,
    /// <summary>530: Conflict with recalled state (kernel-internal).</summary>
    ERECALLCONFLICT = 530,
    /// <summary>531: NFS file lock reclaim refused (kernel-internal).</summary>
    ENOGRACE = 531,
}
