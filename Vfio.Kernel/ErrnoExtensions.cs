// Models the strerror() texts of glibc for the numbers in Errno.cs.

using System.Collections.Frozen;

namespace Vfio.Kernel;

/// <summary>Names and messages of <see cref="Errno"/> values, and the helpers syscalls use.</summary>
public static class ErrnoExtensions
{
    private static readonly FrozenDictionary<Errno, string> s_messages = new Dictionary<Errno, string>
    {
        [Errno.None] = "Success",
        [Errno.EPERM] = "Operation not permitted",
        [Errno.ENOENT] = "No such file or directory",
        [Errno.ESRCH] = "No such process",
        [Errno.EINTR] = "Interrupted system call",
        [Errno.EIO] = "Input/output error",
        [Errno.ENXIO] = "No such device or address",
        [Errno.E2BIG] = "Argument list too long",
        [Errno.ENOEXEC] = "Exec format error",
        [Errno.EBADF] = "Bad file descriptor",
        [Errno.ECHILD] = "No child processes",
        [Errno.EAGAIN] = "Resource temporarily unavailable",
        [Errno.ENOMEM] = "Cannot allocate memory",
        [Errno.EACCES] = "Permission denied",
        [Errno.EFAULT] = "Bad address",
        [Errno.ENOTBLK] = "Block device required",
        [Errno.EBUSY] = "Device or resource busy",
        [Errno.EEXIST] = "File exists",
        [Errno.EXDEV] = "Invalid cross-device link",
        [Errno.ENODEV] = "No such device",
        [Errno.ENOTDIR] = "Not a directory",
        [Errno.EISDIR] = "Is a directory",
        [Errno.EINVAL] = "Invalid argument",
        [Errno.ENFILE] = "Too many open files in system",
        [Errno.EMFILE] = "Too many open files",
        [Errno.ENOTTY] = "Inappropriate ioctl for device",
        [Errno.ETXTBSY] = "Text file busy",
        [Errno.EFBIG] = "File too large",
        [Errno.ENOSPC] = "No space left on device",
        [Errno.ESPIPE] = "Illegal seek",
        [Errno.EROFS] = "Read-only file system",
        [Errno.EMLINK] = "Too many links",
        [Errno.EPIPE] = "Broken pipe",
        [Errno.EDOM] = "Numerical argument out of domain",
        [Errno.ERANGE] = "Numerical result out of range",
        [Errno.EDEADLK] = "Resource deadlock avoided",
        [Errno.ENAMETOOLONG] = "File name too long",
        [Errno.ENOLCK] = "No locks available",
        [Errno.ENOSYS] = "Function not implemented",
        [Errno.ENOTEMPTY] = "Directory not empty",
        [Errno.ELOOP] = "Too many levels of symbolic links",
        [Errno.ENOMSG] = "No message of desired type",
        [Errno.EIDRM] = "Identifier removed",
        [Errno.ECHRNG] = "Channel number out of range",
        [Errno.EL2NSYNC] = "Level 2 not synchronized",
        [Errno.EL3HLT] = "Level 3 halted",
        [Errno.EL3RST] = "Level 3 reset",
        [Errno.ELNRNG] = "Link number out of range",
        [Errno.EUNATCH] = "Protocol driver not attached",
        [Errno.ENOCSI] = "No CSI structure available",
        [Errno.EL2HLT] = "Level 2 halted",
        [Errno.EBADE] = "Invalid exchange",
        [Errno.EBADR] = "Invalid request descriptor",
        [Errno.EXFULL] = "Exchange full",
        [Errno.ENOANO] = "No anode",
        [Errno.EBADRQC] = "Invalid request code",
        [Errno.EBADSLT] = "Invalid slot",
        [Errno.EBFONT] = "Bad font file format",
        [Errno.ENOSTR] = "Device not a stream",
        [Errno.ENODATA] = "No data available",
        [Errno.ETIME] = "Timer expired",
        [Errno.ENOSR] = "Out of streams resources",
        [Errno.ENONET] = "Machine is not on the network",
        [Errno.ENOPKG] = "Package not installed",
        [Errno.EREMOTE] = "Object is remote",
        [Errno.ENOLINK] = "Link has been severed",
        [Errno.EADV] = "Advertise error",
        [Errno.ESRMNT] = "Srmount error",
        [Errno.ECOMM] = "Communication error on send",
        [Errno.EPROTO] = "Protocol error",
        [Errno.EMULTIHOP] = "Multihop attempted",
        [Errno.EDOTDOT] = "RFS specific error",
        [Errno.EBADMSG] = "Bad message",
        [Errno.EOVERFLOW] = "Value too large for defined data type",
        [Errno.ENOTUNIQ] = "Name not unique on network",
        [Errno.EBADFD] = "File descriptor in bad state",
        [Errno.EREMCHG] = "Remote address changed",
        [Errno.ELIBACC] = "Can not access a needed shared library",
        [Errno.ELIBBAD] = "Accessing a corrupted shared library",
        [Errno.ELIBSCN] = ".lib section in a.out corrupted",
        [Errno.ELIBMAX] = "Attempting to link in too many shared libraries",
        [Errno.ELIBEXEC] = "Cannot exec a shared library directly",
        [Errno.EILSEQ] = "Invalid or incomplete multibyte or wide character",
        [Errno.ERESTART] = "Interrupted system call should be restarted",
        [Errno.ESTRPIPE] = "Streams pipe error",
        [Errno.EUSERS] = "Too many users",
        [Errno.ENOTSOCK] = "Socket operation on non-socket",
        [Errno.EDESTADDRREQ] = "Destination address required",
        [Errno.EMSGSIZE] = "Message too long",
        [Errno.EPROTOTYPE] = "Protocol wrong type for socket",
        [Errno.ENOPROTOOPT] = "Protocol not available",
        [Errno.EPROTONOSUPPORT] = "Protocol not supported",
        [Errno.ESOCKTNOSUPPORT] = "Socket type not supported",
        [Errno.EOPNOTSUPP] = "Operation not supported",
        [Errno.EPFNOSUPPORT] = "Protocol family not supported",
        [Errno.EAFNOSUPPORT] = "Address family not supported by protocol",
        [Errno.EADDRINUSE] = "Address already in use",
        [Errno.EADDRNOTAVAIL] = "Cannot assign requested address",
        [Errno.ENETDOWN] = "Network is down",
        [Errno.ENETUNREACH] = "Network is unreachable",
        [Errno.ENETRESET] = "Network dropped connection on reset",
        [Errno.ECONNABORTED] = "Software caused connection abort",
        [Errno.ECONNRESET] = "Connection reset by peer",
        [Errno.ENOBUFS] = "No buffer space available",
        [Errno.EISCONN] = "Transport endpoint is already connected",
        [Errno.ENOTCONN] = "Transport endpoint is not connected",
        [Errno.ESHUTDOWN] = "Cannot send after transport endpoint shutdown",
        [Errno.ETOOMANYREFS] = "Too many references: cannot splice",
        [Errno.ETIMEDOUT] = "Connection timed out",
        [Errno.ECONNREFUSED] = "Connection refused",
        [Errno.EHOSTDOWN] = "Host is down",
        [Errno.EHOSTUNREACH] = "No route to host",
        [Errno.EALREADY] = "Operation already in progress",
        [Errno.EINPROGRESS] = "Operation now in progress",
        [Errno.ESTALE] = "Stale file handle",
        [Errno.EUCLEAN] = "Structure needs cleaning",
        [Errno.ENOTNAM] = "Not a XENIX named type file",
        [Errno.ENAVAIL] = "No XENIX semaphores available",
        [Errno.EISNAM] = "Is a named type file",
        [Errno.EREMOTEIO] = "Remote I/O error",
        [Errno.EDQUOT] = "Disk quota exceeded",
        [Errno.ENOMEDIUM] = "No medium found",
        [Errno.EMEDIUMTYPE] = "Wrong medium type",
        [Errno.ECANCELED] = "Operation canceled",
        [Errno.ENOKEY] = "Required key not available",
        [Errno.EKEYEXPIRED] = "Key has expired",
        [Errno.EKEYREVOKED] = "Key has been revoked",
        [Errno.EKEYREJECTED] = "Key was rejected by service",
        [Errno.EOWNERDEAD] = "Owner died",
        [Errno.ENOTRECOVERABLE] = "State not recoverable",
        [Errno.ERFKILL] = "Operation not possible due to RF-kill",
        [Errno.EHWPOISON] = "Memory page has hardware error",
        [Errno.ERESTARTSYS] = "Restart the system call (kernel-internal; user space sees EINTR or a restart)",
        [Errno.ERESTARTNOINTR] = "Restart the system call unconditionally (kernel-internal)",
        [Errno.ERESTARTNOHAND] = "Restart if no signal handler (kernel-internal)",
        [Errno.ENOIOCTLCMD] = "No ioctl command (kernel-internal; user space sees ENOTTY)",
        [Errno.ERESTART_RESTARTBLOCK] = "Restart by calling sys_restart_syscall (kernel-internal)",
        [Errno.EPROBE_DEFER] = "Driver requests probe retry (kernel-internal)",
        [Errno.EOPENSTALE] = "Open found a stale dentry (kernel-internal)",
        [Errno.ENOPARAM] = "Parameter not supported (kernel-internal)",
        [Errno.EBADHANDLE] = "Illegal NFS file handle (kernel-internal)",
        [Errno.ENOTSYNC] = "Update synchronization mismatch (kernel-internal)",
        [Errno.EBADCOOKIE] = "Cookie is stale (kernel-internal)",
        [Errno.ENOTSUPP] = "Operation is not supported (kernel-internal)",
        [Errno.ETOOSMALL] = "Buffer or request is too small (kernel-internal)",
        [Errno.ESERVERFAULT] = "An untranslatable error occurred (kernel-internal)",
        [Errno.EBADTYPE] = "Type not supported by server (kernel-internal)",
        [Errno.EJUKEBOX] = "Request initiated, but will not complete before timeout (kernel-internal)",
        [Errno.EIOCBQUEUED] = "iocb queued, will get completion event (kernel-internal)",
        [Errno.ERECALLCONFLICT] = "Conflict with recalled state (kernel-internal)",
        [Errno.ENOGRACE] = "NFS file lock reclaim refused (kernel-internal)",
    }.ToFrozenDictionary();

    /// <summary>The kernel's name of the error (<c>EINVAL</c>), or <c>E?(n)</c> for a number Linux does not define.</summary>
    public static string Name(this Errno errno)
        => s_messages.ContainsKey(errno) ? (errno == Errno.None ? "0" : errno.ToString()) : $"E?({(int)errno})";

    /// <summary>The strerror() text (<c>Invalid argument</c>).</summary>
    public static string Message(this Errno errno)
        => s_messages.TryGetValue(errno, out string? m) ? m : $"Unknown error {(int)errno}";

    /// <summary><c>EINVAL (Invalid argument)</c>: how traces and exception messages show an errno.</summary>
    public static string Describe(this Errno errno) => $"{errno.Name()} ({errno.Message()})";

    /// <summary>True for the numbers that only exist inside the kernel (512 and above).</summary>
    public static bool IsKernelInternal(this Errno errno) => (int)errno >= 512;

    /// <summary>The value a failing syscall returns: <c>-errno</c>.</summary>
    public static int Negative(this Errno errno) => -(int)errno;

    /// <summary>Interprets a kernel return value: 0 or a positive count is success, <c>-errno</c> is an error.</summary>
    public static Errno FromReturn(long ret) => ret < 0 ? (Errno)(int)(-ret) : Errno.None;

    /// <summary>Parses a kernel name (<c>"EINVAL"</c>) or a number.</summary>
    public static bool TryParse(string text, out Errno errno)
    {
        if (int.TryParse(text, out int n)) { errno = (Errno)n; return s_messages.ContainsKey(errno); }
        return Enum.TryParse(text, ignoreCase: false, out errno) && s_messages.ContainsKey(errno);
    }
}
