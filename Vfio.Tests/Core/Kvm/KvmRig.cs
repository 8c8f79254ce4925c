// Test-only set-up for the KVM-VFIO tests (virt/kvm/vfio.c, v6.12): the core test rig
// (VfioRig on the host: the default machine, vfio, the vfio-test driver and its Moq type1)
// with kvm loaded by the host and edu (0000:01:00.0) bound to vfio-test, plus the KVM
// syscalls the tests make through the rig's process.

using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Kvm;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using KvmModule = Vfio.Core.Kvm.Kvm;

namespace Vfio.Tests.Core.Kvm;

/// <summary>What most KVM-VFIO tests start from; <see cref="Container"/> is -1 when the group is in none.</summary>
internal readonly record struct KvmSetUp(int Group, int Container, int Vm, int Dev, KvmVm V);

internal sealed class KvmRig
{
    private ulong _intBuf;

    /// <summary>Builds the rig outside a run: vfio with <paramref name="users"/>, kvm, and edu on vfio-test.</summary>
    public KvmRig(SchedulerMode mode = SchedulerMode.Real, ulong seed = 1, StrategySpec? strategy = null, VfioExternalUsers users = VfioExternalUsers.FileApi)
    {
        Vfio = new VfioRig(mode, seed, new VfioOptions { Design = VfioDesign.Default with { ExternalUsers = users } }, strategy: strategy, modules: b => b.AddKvm());
        Kvm = Vfio.Sim.Kvm!;
        Vfio.Bind(VfioRig.Edu);
        Vfio.Driver.Ops.OnOpen = d =>
        {
            KvmAtOpen.Enqueue(d.Kvm);
            return 0;
        };
    }

    public VfioRig Vfio { get; }

    public KvmModule Kvm { get; }

    public SimProcess P => Vfio.User;

    public VfioGroup Group => Vfio.Group(VfioRig.Edu);

    public VfioDevice Device => Vfio.VDev(VfioRig.Edu);

    /// <summary>The KVM each open_device saw on edu (device->kvm), in order.</summary>
    public ConcurrentQueue<IVfioKvm?> KvmAtOpen { get; } = new();

    // ---- vfio.

    public int OpenGroup() => Vfio.OpenGroup(VfioRig.Edu);

    /// <summary>Opens the container, attaches the group and sets the type1v2 backend; the container fd.</summary>
    public int AttachContainer(int groupFd, bool setIommu = true)
    {
        int container = Vfio.OpenContainer();
        Assert.That(container, Is.GreaterThanOrEqualTo(0));
        Assert.That(Vfio.SetContainer(groupFd, container), Is.Zero);
        if (setIommu)
        {
            Assert.That(Vfio.SetIommu(container), Is.Zero);
        }

        return container;
    }

    public int GetDeviceFd(int groupFd) => (int)Vfio.GetDeviceFd(groupFd, VfioRig.Edu);

    // ---- kvm.

    public int CreateVm()
    {
        int kvm = P.Open("/dev/kvm");
        Assert.That(kvm, Is.GreaterThanOrEqualTo(0));
        int vm = (int)P.Ioctl(kvm, KvmIoctl.CreateVm);
        Assert.That(P.Close(kvm), Is.Zero);
        Assert.That(vm, Is.GreaterThanOrEqualTo(0));
        return vm;
    }

    /// <summary>KVM_CREATE_DEVICE: the ioctl's result and the struct as it came back.</summary>
    public long CreateDevice(int vmFd, uint type, uint flags, out KvmCreateDevice cd)
    {
        cd = new KvmCreateDevice { Type = type, Fd = 0xdead, Flags = flags };
        Span<byte> bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref cd, 1));
        return P.Ioctl(vmFd, KvmIoctl.CreateDevice, bytes);
    }

    public int CreateVfioDevice(int vmFd)
    {
        Assert.That(CreateDevice(vmFd, (uint)KvmDeviceType.Vfio, 0, out KvmCreateDevice cd), Is.Zero);
        return (int)cd.Fd;
    }

    /// <summary>
    /// The group fd (attached to a type1v2 container when <paramref name="container"/>), a
    /// VM and its kvm-vfio device, and the group file added to it when <paramref name="add"/>.
    /// </summary>
    public KvmSetUp SetUp(bool container = false, bool add = false)
    {
        int g = OpenGroup();
        Assert.That(g, Is.GreaterThanOrEqualTo(0));
        int c = container ? AttachContainer(g) : -1;
        int vm = CreateVm();
        int dev = CreateVfioDevice(vm);
        if (add)
        {
            Assert.That(Add(dev, g), Is.Zero);
        }

        return new KvmSetUp(g, c, vm, dev, Vm(vm));
    }

    /// <summary>A device-attr ioctl with addr pointing to <paramref name="fd"/> (or <paramref name="addr"/> when given).</summary>
    public long Attr(int devFd, uint cmd, uint group, ulong attr, int fd, ulong? addr = null)
    {
        if (_intBuf == 0)
        {
            long a = P.Mmap(0, PhysMem.PageSize, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            Assert.That(a, Is.GreaterThan(0));
            _intBuf = (ulong)a;
        }

        Assert.That(P.Mm.WriteUser(_intBuf, BitConverter.GetBytes(fd)), Is.Zero);
        var a2 = new KvmDeviceAttr { Group = group, Attr = attr, Addr = addr ?? _intBuf };
        return P.Ioctl(devFd, cmd, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref a2, 1)));
    }

    public long Add(int devFd, int fd) => Attr(devFd, KvmIoctl.SetDeviceAttr, KvmDevVfio.File, KvmDevVfio.FileAdd, fd);

    public long Del(int devFd, int fd) => Attr(devFd, KvmIoctl.SetDeviceAttr, KvmDevVfio.File, KvmDevVfio.FileDel, fd);

    /// <summary>Closes <paramref name="fds"/> in order, skipping -1 (a container never opened).</summary>
    public void Close(params int[] fds)
    {
        foreach (int fd in fds)
        {
            if (fd >= 0)
            {
                Assert.That(P.Close(fd), Is.Zero, $"close({fd})");
            }
        }
    }

    // ---- Looking inside.

    public T Private<T>(int fd)
        where T : class
    {
        SimFile f = P.Files.Get(fd)!;
        try
        {
            return (T)f.PrivateData!;
        }
        finally
        {
            f.Put();
        }
    }

    public KvmVm Vm(int vmFd) => Private<KvmVm>(vmFd);

    /// <summary>f_count of the file at <paramref name="fd"/>, not counting this look-up's own reference.</summary>
    public int FileRefs(int fd)
    {
        SimFile f = P.Files.Get(fd)!;
        int n = f.ReferenceCount - 1;
        f.Put();
        return n;
    }

    /// <summary>The path of the file at <paramref name="fd"/>.</summary>
    public string PathOf(int fd)
    {
        SimFile f = P.Files.Get(fd)!;
        string path = f.Path;
        f.Put();
        return path;
    }

    /// <summary>Unbinds edu from vfio-test and checks that vfio and kvm hold nothing any more.</summary>
    public void AssertNothingLeft()
    {
        Assert.That(Vfio.Unbind(VfioRig.Edu), Is.EqualTo("vfio-test"));
        Assert.That(Vfio.Vfio.Groups, Is.Empty, "vfio groups");
        Assert.That(Vfio.Vfio.DeviceSetCount, Is.Zero, "vfio device sets");
        Assert.That(Kvm.Vms, Is.Empty, "VMs");
    }
}
