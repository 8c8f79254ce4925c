// A test rig for the mtty device model: the edu function stands in for the mdev (unbound,
// out of its IOMMU group, rebound to the sample vfio driver as an emulated-IOMMU device
// whose ops are an MttyDevice's), opened through a type1 container like any mdev. The
// expected values come from the real kernels (Oracle/mtty_probe.linux-*.txt).

using System.Buffers.Binary;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mtty;
using Vfio.Platform.Fs;
using Vfio.Tests.Core;
using Vfio.Tests.Type1;

namespace Vfio.Tests.Mdev;

internal sealed class MttyRig
{
    public MttyRig(KernelProfile? profile = null, int nrPorts = 2, SchedulerMode mode = SchedulerMode.Real, ulong seed = 1)
    {
        Type1 = new Type1Rig(mode, seed, profile ?? KernelProfile.Linux6_12);
        Pool = new MttyPortPool();
        Device = new MttyDevice(Type1.Kernel, Pool, nrPorts, "mtty-test");
    }

    public Type1Rig Type1 { get; }

    public MttyPortPool Pool { get; }

    public MttyDevice Device { get; }

    public VfioDeviceFd Fd { get; private set; } = null!;

    public int Container { get; private set; }

    public int Group { get; private set; }

    public void Run(Action body) => Type1.Run(body);

    /// <summary>Binds the stand-in and opens container, group and device fd; then GET_INFO (as every user does first).</summary>
    public void Open(bool getInfo = true)
    {
        Type1.EmulatedNext(withDmaUnmap: false);
        Type1.Core.Driver.CustomOps = Device.Ops;
        (int c, int g, int d) = Type1.OpenEdu();
        Container = c;
        Group = g;
        Fd = new VfioDeviceFd(Type1.User, d);
        if (getInfo)
        {
            Fd.GetInfo();
        }
    }

    public void Reopen()
    {
        Type1.User.Close(Fd.Fd);
        long d = Type1.Core.GetDeviceFd(Group, VfioRig.Edu);
        Fd = new VfioDeviceFd(Type1.User, (int)d);
        Fd.GetInfo();
    }

    /// <summary>A raw GET_REGION_INFO (or GET_IRQ_INFO) of any u32 index: 0 or -errno.</summary>
    public long InfoRaw(uint cmd, uint index)
    {
        Span<byte> b = stackalloc byte[32];
        BinaryPrimitives.WriteUInt32LittleEndian(b, cmd == VfioIoctl.DeviceGetRegionInfo ? 32u : 16u);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], index);
        return Type1.User.Ioctl(Fd.Fd, cmd, cmd == VfioIoctl.DeviceGetRegionInfo ? b : b[..16]);
    }

    public byte Rd(int bar, int reg)
    {
        Span<byte> b = stackalloc byte[1];
        Fd.Read(bar, reg, b);
        return b[0];
    }

    public void Wr(int bar, int reg, byte v) => Fd.Write(bar, reg, [v]);

    public void WrAll(int bar, string s)
    {
        foreach (char ch in s)
        {
            Wr(bar, 0, (byte)ch);
        }
    }

    /// <summary>The probe's register line: IER IIR LCR MCR LSR MSR SCR.</summary>
    public string Regs(int bar) => $"IER={Rd(bar, 1):x2} IIR={Rd(bar, 2):x2} LCR={Rd(bar, 3):x2} MCR={Rd(bar, 4):x2} LSR={Rd(bar, 5):x2} MSR={Rd(bar, 6):x2} SCR={Rd(bar, 7):x2}";

    public long SetIrqs(VfioIrqSetFlags flags, int index, uint start, uint count, ReadOnlySpan<byte> data = default, uint? argsz = null)
    {
        var buf = new byte[VfioIrqSet.MinSz + data.Length];
        var hdr = new VfioIrqSet { Argsz = argsz ?? (uint)buf.Length, Flags = flags, Index = (uint)index, Start = start, Count = count };
        System.Runtime.InteropServices.MemoryMarshal.Write(buf, in hdr);
        data.CopyTo(buf.AsSpan(VfioIrqSet.MinSz));
        return Type1.User.Ioctl(Fd.Fd, VfioIoctl.DeviceSetIrqs, buf);
    }

    public long SetEventfd(int index, int fd) => SetIrqs(VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger, index, 0, 1, BitConverter.GetBytes(fd));

    public long Trigger(int index) => SetIrqs(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, index, 0, 1);

    public long Unmask() => SetIrqs(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionUnmask, 0, 0, 1);

    public long Mask() => SetIrqs(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionMask, 0, 0, 1);

    public int Eventfd() => Type1.User.Eventfd(0, EventFdContext.EFD_NONBLOCK);

    /// <summary>A non-blocking eventfd read: the count, or -EAGAIN.</summary>
    public long Ev(int fd)
    {
        Span<byte> b = stackalloc byte[8];
        long r = Type1.User.Read(fd, b);
        return r == 8 ? BitConverter.ToInt64(b) : r;
    }
}
