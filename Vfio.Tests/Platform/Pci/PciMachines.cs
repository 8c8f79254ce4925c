// Small machines for the PCI hardware tests: a generic function behind a root port, built
// from a JSON description as a user of the simulator would write it, plus raw access to
// the binary config file (sysfs Read decodes text, config space is bytes).

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Fs;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;

namespace Vfio.Tests.Platform.Pci;

internal static class PciMachines
{
    /// <summary>The function of <see cref="OneDevice"/>.</summary>
    public const string Bdf = "0000:01:00.0";

    /// <summary>
    /// One generic function alone behind an ACS root port: BAR 0 (1M, 32-bit), BAR 2 (256M,
    /// 64-bit prefetchable), 4 MSI vectors, 8 MSI-X vectors in BAR 0, flr, pm and bus resets.
    /// </summary>
    public const string OneDeviceJson = """
        {"memory":{"ram":"1G"},"iommu":null,"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
          {"slot":0,"type":"generic","vendor":"0x8086","device":"0x1521","class":"0x020000","revision":"0x03",
           "subsystemVendor":"0x8086","subsystemDevice":"0x0001",
           "bars":[{"index":0,"size":"1M"},{"index":2,"size":"256M","type":"mem64","prefetch":true},{"index":4,"size":32,"type":"io"}],
           "rom":"64K","msi":4,
           "msix":{"vectors":8,"tableBar":0,"tableOffset":"0x10000","pbaBar":0,"pbaOffset":"0x20000"},
           "resets":["flr","pm","bus"]}]}]}
        """;

    public static SimMachine Build(string json, SchedulerMode mode = SchedulerMode.Real, ulong seed = 1)
        => MachineBuilder.Build(MachineDescriptionReader.Parse(json), Runs.Kernel(mode, seed));

    public static SimMachine OneDevice(SchedulerMode mode = SchedulerMode.Real, ulong seed = 1) => Build(OneDeviceJson, mode, seed);

    public static GenericPciDevice Generic(this SimMachine machine, string bdf = Bdf)
        => machine.Pci.Find(bdf) as GenericPciDevice ?? throw new AssertionException($"{bdf} is not a generic function");

    public static PciBridge Bridge(this SimMachine machine, string bdf)
        => machine.Pci.Find(bdf) as PciBridge ?? throw new AssertionException($"{bdf} is not a bridge");

    public static void EnableMemoryAndMaster(this PciDevice dev)
        => dev.WriteConfig(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster, 2);

    public static string Attr(string bdf, string attr) => $"/sys/bus/pci/devices/{bdf}/{attr}";

    /// <summary>pread of the config file by <paramref name="caller"/>: the bytes read, or null with the error.</summary>
    public static byte[]? ReadConfigFile(this SimMachine machine, string bdf, long offset, int count, SimProcess? caller = null)
    {
        SimProcess p = caller ?? machine.Init;
        int fd = p.Open(Attr(bdf, "config"), OpenFlags.O_RDONLY);
        Assert.That(fd, Is.GreaterThanOrEqualTo(0), "open config");
        try
        {
            byte[] buf = new byte[count];
            long n = p.Pread(fd, buf, offset);
            Assert.That(n, Is.GreaterThanOrEqualTo(0), "pread config");
            return buf[..(int)n];
        }
        finally
        {
            p.Close(fd);
        }
    }

    /// <summary>pwrite of the config file as root: the write's result.</summary>
    public static long WriteConfigFile(this SimMachine machine, string bdf, long offset, ReadOnlySpan<byte> data)
    {
        SimProcess p = machine.Init;
        int fd = p.Open(Attr(bdf, "config"), OpenFlags.O_WRONLY);
        Assert.That(fd, Is.GreaterThanOrEqualTo(0), "open config");
        try
        {
            return p.Pwrite(fd, data, offset);
        }
        finally
        {
            p.Close(fd);
        }
    }

    public static uint ReadMmio32(this SimMachine machine, long address) => Devices.Cpu.Read32(machine, address);

    public static void WriteMmio32(this SimMachine machine, long address, uint value) => Devices.Cpu.Write32(machine, address, value);
}
