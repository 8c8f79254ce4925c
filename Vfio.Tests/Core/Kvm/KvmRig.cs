// Test-only set-up for the KVM-VFIO tests (virt/kvm/vfio.c, v6.12): the default machine
// with vfio and kvm loaded, edu (0000:01:00.0, IOMMU group 2) moved from its host driver
// to the test vfio driver, and a "qemu" process whose syscalls the tests go through.

using System.Runtime.InteropServices;
using System.Text;
using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Kvm;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Machine;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using KvmModule = Vfio.Core.Kvm.Kvm;

namespace Vfio.Tests.Core.Kvm;

internal sealed class KvmRig
{
    public const string Bdf = "0000:01:00.0";
    public const string GroupPath = "/dev/vfio/2";

    private ulong _intBuf;

    private KvmRig(SimMachine m, VfioCore core, KvmModule kvm, KvmTestVfioDriver driver, SimProcess p)
    {
        M = m;
        Core = core;
        Kvm = kvm;
        Driver = driver;
        P = p;
    }

    public SimMachine M { get; }

    public VfioCore Core { get; }

    public KvmModule Kvm { get; }

    public KvmTestVfioDriver Driver { get; }

    public SimProcess P { get; }

    public VfioGroup Group => Core.Groups.Single();

    public VfioDevice Device => (VfioDevice)M.Pci.Find(Bdf)!.DriverData!;

    /// <summary>Builds the machine on <paramref name="k"/> (outside a run).</summary>
    public static SimMachine Machine(SimKernel k) => MachineBuilder.Default(k);

    /// <summary>Loads vfio (with <paramref name="users"/>) and kvm, binds edu to the test driver, makes the process (inside a run).</summary>
    public static KvmRig Create(SimMachine m, VfioExternalUsers users = VfioExternalUsers.FileApi)
    {
        VfioCore core = VfioCore.Load(m, new VfioOptions { Design = VfioDesign.Default with { ExternalUsers = users } });
        Assert.That(core.RegisterIommuDriver(new KvmTestIommu()), Is.Zero);
        KvmModule kvm = KvmModule.Load(m);
        var driver = new KvmTestVfioDriver();
        Assert.That(m.Pci.RegisterDriver(driver), Is.Zero);
        Assert.That(m.Sysfs.Write("/sys/bus/pci/drivers/edu/unbind", Bdf), Is.GreaterThan(0));
        Assert.That(m.Sysfs.Write($"/sys/bus/pci/devices/{Bdf}/driver_override", KvmTestVfioDriver.DriverName), Is.GreaterThan(0));
        Assert.That(m.Sysfs.Write("/sys/bus/pci/drivers_probe", Bdf), Is.GreaterThan(0));
        Assert.That(m.Pci.Find(Bdf)!.Driver?.Name, Is.EqualTo(KvmTestVfioDriver.DriverName));
        SimProcess p = m.CreateProcess("qemu", Credentials.Root);
        return new KvmRig(m, core, kvm, driver, p);
    }

    // ---- vfio.

    public int OpenGroup() => P.Open(GroupPath);

    /// <summary>Opens the container, attaches the group and sets the type1v2 backend; the container fd.</summary>
    public int AttachContainer(int groupFd, bool setIommu = true)
    {
        int container = P.Open("/dev/vfio/vfio");
        Assert.That(container, Is.GreaterThanOrEqualTo(0));
        Assert.That(SetContainer(groupFd, container), Is.Zero);
        if (setIommu)
        {
            Assert.That(P.Ioctl(container, VfioIoctl.SetIommu, VfioExtension.Type1v2), Is.Zero);
        }

        return container;
    }

    public long SetContainer(int groupFd, int containerFd) => P.Ioctl(groupFd, VfioIoctl.GroupSetContainer, BitConverter.GetBytes(containerFd));

    public long UnsetContainer(int groupFd) => P.Ioctl(groupFd, VfioIoctl.GroupUnsetContainer);

    public int GetDeviceFd(int groupFd) => (int)P.Ioctl(groupFd, VfioIoctl.GroupGetDeviceFd, Encoding.ASCII.GetBytes(Bdf + "\0"));

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

    /// <summary>Unbinds edu from the test driver and checks that vfio and kvm hold nothing any more.</summary>
    public void AssertNothingLeft()
    {
        Assert.That(M.Sysfs.Write($"/sys/bus/pci/drivers/{KvmTestVfioDriver.DriverName}/unbind", Bdf), Is.GreaterThan(0));
        Assert.That(Core.Groups, Is.Empty, "vfio groups");
        Assert.That(Core.DeviceSetCount, Is.Zero, "vfio device sets");
        Assert.That(Kvm.Vms, Is.Empty, "VMs");
    }
}
