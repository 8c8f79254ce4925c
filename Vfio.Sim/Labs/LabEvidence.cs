// What the graders of labs 3–5 read off a finished run: the student's open fds by what they
// are (container, group, device, eventfd), the fds strace saw the solution create, and short
// descriptions of them for the messages. Read at quiescent points (no task runs).

using System.Globalization;
using Vfio.Core;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Sim.Labs;

/// <summary>What a vfio-related fd of the student's process is.</summary>
internal enum LabFdKind
{
    Container,
    Group,
    Device,
    Eventfd,
    Other,
}

/// <summary>Evidence about the student's process for the graders.</summary>
internal static class LabEvidence
{
    /// <summary>What the file behind an fd is.</summary>
    internal static LabFdKind KindOf(SimFile file) => file.Ops switch
    {
        VfioContainerFops => LabFdKind.Container,
        VfioGroupFops => LabFdKind.Group,
        VfioDeviceFops => LabFdKind.Device,
        EventFdOps => LabFdKind.Eventfd,
        _ => LabFdKind.Other,
    };

    /// <summary>The process's open fds of <paramref name="kind"/> (none once it exited).</summary>
    internal static List<int> OpenFds(SimProcess process, LabFdKind kind)
    {
        var fds = new List<int>();
        if (process.HasExited)
        {
            return fds;
        }

        foreach ((int fd, SimFile file) in process.Files.Open)
        {
            if (KindOf(file) == kind)
            {
                fds.Add(fd);
            }
        }

        return fds;
    }

    /// <summary>Every open vfio fd (container, group, device), described: <c>fd 5 (the device fd)</c>.</summary>
    internal static List<string> OpenVfioFds(SimProcess process)
    {
        var list = new List<string>();
        if (process.HasExited)
        {
            return list;
        }

        foreach ((int fd, SimFile file) in process.Files.Open)
        {
            LabFdKind kind = KindOf(file);
            if (kind is LabFdKind.Container or LabFdKind.Group or LabFdKind.Device)
            {
                list.Add(string.Create(CultureInfo.InvariantCulture, $"fd {fd} ({Describe(kind, file)})"));
            }
        }

        return list;
    }

    /// <summary>The fds the solution got from eventfd2(), by strace.</summary>
    internal static HashSet<int> EventfdsCreated(IReadOnlyList<SyscallRecord> strace)
    {
        var fds = new HashSet<int>();
        foreach (SyscallRecord r in strace)
        {
            if (r.Syscall is "eventfd2" or "eventfd" && r.Return >= 0)
            {
                fds.Add((int)r.Return);
            }
        }

        return fds;
    }

    /// <summary>The successful calls of ioctl <paramref name="request"/> in <paramref name="strace"/>.</summary>
    internal static int CountIoctl(IReadOnlyList<SyscallRecord> strace, string request, bool succeeded = true)
    {
        int n = 0;
        foreach (SyscallRecord r in strace)
        {
            if (r.Syscall == "ioctl" && r.Request == request && (!succeeded || r.Return >= 0))
            {
                n++;
            }
        }

        return n;
    }

    private static string Describe(LabFdKind kind, SimFile file) => kind switch
    {
        LabFdKind.Container => "the container, /dev/vfio/vfio",
        LabFdKind.Group => $"the group, {file.Path}",
        LabFdKind.Device => "a device fd from VFIO_GROUP_GET_DEVICE_FD",
        _ => file.Path,
    };

    /// <summary>0x-prefixed lower-case hex.</summary>
    internal static string Hex(ulong v) => string.Create(CultureInfo.InvariantCulture, $"0x{v:x}");

    /// <summary>Virtual nanoseconds as seconds with a millisecond: <c>10.000 s</c>.</summary>
    internal static string Seconds(long ns) => (ns / 1e9).ToString("0.000", CultureInfo.InvariantCulture) + " s";
}
