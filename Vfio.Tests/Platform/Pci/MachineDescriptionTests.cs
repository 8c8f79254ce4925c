using NUnit.Framework;
using Vfio.Platform;
using Vfio.Platform.Iommu;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Pci;

/// <summary>Tests MachineDescriptionReader and MachineBuilder: rejected descriptions name the field; valid ones build as firmware would.</summary>
public sealed class MachineDescriptionTests
{
    private static string Machine(string pci, string memory = "{\"ram\":\"1G\"}") => $$"""{"memory":{{memory}},"iommu":null,"pci":[{{pci}}]}""";

    private static MachineDescriptionException ParseFails(string json)
        => Assert.Throws<MachineDescriptionException>(() => MachineDescriptionReader.Parse(json))!;

    private static MachineDescriptionException BuildFails(string json)
    {
        MachineDescription d = MachineDescriptionReader.Parse(json);
        return Assert.Throws<MachineDescriptionException>(() => MachineBuilder.Build(d, Runs.Kernel(Vfio.Kernel.SchedulerMode.Real)))!;
    }

    private static void AssertNames(MachineDescriptionException e, string field, string fragment)
    {
        Assert.That(e.Field, Is.EqualTo(field));
        Assert.That(e.Message, Does.StartWith(field + ": "));
        Assert.That(e.Message, Does.Contain(fragment));
    }

    [Test]
    public void AnUnknownField_IsRejected_ListingTheAllowedOnes()
        => AssertNames(ParseFails(Machine("""{"slot":1,"type":"generic","colour":"red"}""")), "pci[0].colour", "unknown field (allowed here: slot, function");

    [Test]
    public void AnUnknownTopLevelField_IsRejected()
        => AssertNames(ParseFails("""{"memory":{"ram":"1G"},"cpus":4}"""), "$.cpus", "unknown field");

    [TestCase("\"addressWidth\":52", "iommu.addressWidth", "52 is outside 32..48")]
    [TestCase("\"iotlbEntries\":1000", "iommu.iotlbEntries", "1000 is not 0 (no IOTLB) or a power of two")]
    [TestCase("\"pgsizes\":[\"2M\"]", "iommu.pgsizes", "includes 4K")]
    [TestCase("\"pgsizes\":[\"4K\",\"64K\"]", "iommu.pgsizes", "is not a set of 4K, 2M and 1G")]
    public void AnIommuTheHardwareCannotBe_IsRejectedNamingTheField(string field, string path, string fragment)
        => AssertNames(ParseFails("{\"memory\":{\"ram\":\"1G\"},\"iommu\":{" + field + "}}"), path, fragment);

    [Test]
    public void TheIommuSaysCoherenceAndSnoopControlApart_BothDefaultingToTrue()
    {
        IommuHardwareConfig qemu = MachineDescriptionReader.Parse("""{"memory":{"ram":"1G"},"iommu":{"cacheCoherent":true,"snoopControl":false}}""").Iommu!;
        IommuHardwareConfig plain = MachineDescriptionReader.Parse("""{"memory":{"ram":"1G"},"iommu":{}}""").Iommu!;
        Assert.Multiple(() =>
        {
            Assert.That((qemu.CacheCoherent, qemu.SnoopControl, qemu.CanEnforceCacheCoherency), Is.EqualTo((true, false, false)));
            Assert.That((plain.CacheCoherent, plain.SnoopControl), Is.EqualTo((true, true)));
            Assert.That(MachineDescriptionReader.Default.Iommu!.CanEnforceCacheCoherency, Is.True, "the default machine is server VT-d");
            Assert.That(() => MachineDescriptionReader.Parse("""{"memory":{"ram":"1G"},"iommu":{"snoopControl":1}}"""),
                Throws.TypeOf<MachineDescriptionException>().With.Message.Contains("iommu.snoopControl"));
        });
    }

    [Test]
    public void AnIommuWithoutAnIotlb_Builds()
    {
        MachineDescription d = MachineDescriptionReader.Parse("""{"memory":{"ram":"1G"},"iommu":{"iotlbEntries":0}}""");
        SimMachine m = MachineBuilder.Build(d, Runs.Kernel(Vfio.Kernel.SchedulerMode.Real));
        Assert.That(m.Iommu!.Hardware.Config.IotlbEntries, Is.Zero);
    }

    [Test]
    public void Slot32_IsOutOfRange()
        => AssertNames(ParseFails(Machine("""{"slot":32,"type":"generic"}""")), "pci[0].slot", "32 is out of range 0..31");

    [Test]
    public void AMissingSlot_IsRejected()
        => AssertNames(ParseFails(Machine("""{"type":"generic"}""")), "pci[0].slot", "needs a slot");

    [Test]
    public void ADuplicateDevfn_IsRejected()
        => AssertNames(ParseFails(Machine("""{"slot":1,"type":"generic"},{"slot":1,"type":"generic"}""")), "pci[1].function", "01.0 is already used by pci[0]");

    [Test]
    public void FunctionOneWithoutAMultifunctionFunctionZero_IsRejected()
    {
        AssertNames(ParseFails(Machine("""{"slot":1,"function":1,"type":"generic"}""")), "pci[0].function", "needs a function 0 marked \"multifunction\"");
        AssertNames(ParseFails(Machine("""{"slot":1,"type":"generic"},{"slot":1,"function":1,"type":"generic"}""")), "pci[1].function", "multifunction");
    }

    [Test]
    public void PcieOnAConventionalBus_IsRejected()
        => AssertNames(
            ParseFails(Machine("""{"slot":1,"type":"root-port","children":[{"slot":0,"type":"pcie-to-pci-bridge","children":[{"slot":1,"type":"generic","pcie":true}]}]}""")),
            "pci[0].children[0].children[0].pcie",
            "conventional PCI bus");

    [Test]
    public void AnExpressPortOnAConventionalBus_IsRejected()
        => AssertNames(
            ParseFails(Machine("""{"slot":1,"type":"pci-bridge","children":[{"slot":0,"type":"switch-upstream"}]}""")),
            "pci[0].children[0].type",
            "cannot sit on a conventional PCI bus");

    [Test]
    public void AcsOnASingleFunctionEndpoint_IsRejected()
        => AssertNames(ParseFails(Machine("""{"slot":1,"type":"generic","acs":true}""")), "pci[0].acs", "only ports and multifunction");

    [Test]
    public void AcsOnAPciBridge_IsRejected()
        => AssertNames(ParseFails(Machine("""{"slot":1,"type":"pcie-to-pci-bridge","acs":true}""")), "pci[0].acs", "has no ACS capability");

    [TestCase("3000", "3000 is not a power of two")]
    [TestCase("8", "8 is not a power of two between 16")]
    [TestCase("\"4G\"", "between 16 and 2G")]
    [TestCase("\"lots\"", "is not a size")]
    public void ABadBarSize_IsRejected(string size, string fragment)
        => AssertNames(ParseFails(Machine($$"""{"slot":1,"type":"generic","bars":[{"index":0,"size":{{size}}}]}""")), "pci[0].bars[0].size", fragment);

    [Test]
    public void ABarOverlappingA64BitBar_IsRejected()
    {
        AssertNames(
            ParseFails(Machine("""{"slot":1,"type":"generic","bars":[{"index":0,"size":"1M","type":"mem64"},{"index":1,"size":"4K"}]}""")),
            "pci[0].bars[1].index",
            "BAR 1 overlaps BAR 0");
        AssertNames(
            ParseFails(Machine("""{"slot":1,"type":"generic","bars":[{"index":1,"size":"4K"},{"index":0,"size":"1M","type":"mem64"}]}""")),
            "pci[0].bars[1].index",
            "BAR 0 overlaps BAR 1");
        AssertNames(ParseFails(Machine("""{"slot":1,"type":"generic","bars":[{"index":5,"size":"1M","type":"mem64"}]}""")), "pci[0].bars[0].index", "cannot start at index 5");
    }

    [Test]
    public void AnUnknownType_IsRejected_NamingTheKnownModels()
    {
        MachineDescriptionException e = ParseFails(Machine("""{"slot":1,"type":"gpu"}"""));

        AssertNames(e, "pci[0].type", "unknown type \"gpu\"");
        Assert.That(e.Message, Does.Contain("generic").And.Contain("root-port"));
    }

    [Test]
    public void AFunctionThatDoesNotBindToItsDriver_FailsTheBuild()
        => AssertNames(
            BuildFails("""{"memory":{"ram":"1G"},"iommu":null,"drivers":[{"name":"e1000e","ids":["8086:10d3"]}],"pci":[{"slot":1,"type":"generic","driver":"e1000e"}]}"""),
            "pci[0].driver",
            "0000:00:01.0 did not bind to \"e1000e\" (bound: nothing)");

    [Test]
    public void ADriverCreatedForAFunctionWithoutIds_TakesTheModelsOwnIds_AndBindsIt()
    {
        // Regression: the driver created for an edu naming "edu" (not listed in "drivers")
        // had no ids, so the build failed with "did not bind to edu".
        SimMachine m = PciMachines.Build(Machine("""{"slot":1,"type":"edu","driver":"edu"},{"slot":2,"type":"generic","driver":"mydrv"},{"slot":3,"type":"nic","driver":"mydrv"}"""));

        Assert.That(m.Pci.Find("0000:00:01.0")!.Driver?.Name, Is.EqualTo("edu"));
        Assert.That(m.Pci.Find("0000:00:02.0")!.Driver?.Name, Is.EqualTo("mydrv"));
        Assert.That(m.Pci.Find("0000:00:03.0")!.Driver?.Name, Is.EqualTo("mydrv"));
        var edu = (PciDriver)m.Pci.Find("0000:00:01.0")!.Driver!;
        Assert.That(edu.IdTable, Is.EqualTo(new[] { new PciDeviceId(0x1234, 0x11e8) }), "edu's real vendor:device");
        var mine = (PciDriver)m.Pci.Find("0000:00:02.0")!.Driver!;
        Assert.That(mine.IdTable, Is.EqualTo(new[] { new PciDeviceId(0x1b36, 0x0001), new PciDeviceId(0x8086, 0x10d3) }), "the generic model's default and the NIC's");
    }

    [Test]
    public void ADriverCreatedForAFunction_TakesItsRealIds_NotAVendorTheModelIgnores()
    {
        // edu's ids are edu's whatever the description says; the driver follows the function.
        SimMachine m = PciMachines.Build(Machine("""{"slot":1,"type":"edu","vendor":"0x8086","driver":"edu"}"""));

        var edu = (PciDriver)m.Pci.Find("0000:00:01.0")!.Driver!;
        Assert.That(edu.IdTable, Is.EqualTo(new[] { new PciDeviceId(0x1234, 0x11e8) }));
    }

    [Test]
    public void PciStub_TakesTheRealIdsOfTheFunctionsThatNameIt()
    {
        SimMachine m = PciMachines.Build(Machine("""{"slot":1,"type":"edu","driver":"pci-stub"},{"slot":2,"type":"generic","vendor":"0x8086","driver":"pci-stub"},{"slot":3,"type":"generic","vendor":"0x8086","device":"0x1521"}"""));

        Assert.That(m.Pci.Find("0000:00:01.0")!.Driver?.Name, Is.EqualTo("pci-stub"));
        Assert.That(m.Pci.Find("0000:00:02.0")!.Driver?.Name, Is.EqualTo("pci-stub"));
        Assert.That(m.Pci.Find("0000:00:03.0")!.Driver, Is.Null, "a vendor without a device names 8086:0001, not every Intel function");
    }

    [Test]
    public void AFunctionWithItsIds_BindsToTheDriverItNames()
    {
        SimMachine m = MachineBuilder.Build(MachineDescriptionReader.Parse(Machine("""{"slot":1,"type":"generic","vendor":"0x8086","device":"0x10d3","driver":"e1000e"}""")), Runs.Kernel(Vfio.Kernel.SchedulerMode.Real));

        Assert.That(m.Pci.Find("0000:00:01.0")!.Driver?.Name, Is.EqualTo("e1000e"));
    }

    [Test]
    public void TrailingCommas_AreAccepted()
    {
        MachineDescription d = MachineDescriptionReader.Parse("""{"memory":{"ram":"1G",},"iommu":null,"pci":[{"slot":1,"type":"edu",},],}""");

        Assert.That(d.Memory.RamBytes, Is.EqualTo(1L << 30));
        Assert.That(d.Pci, Has.Count.EqualTo(1));
        Assert.That(MachineBuilder.Build(d, Runs.Kernel(Vfio.Kernel.SchedulerMode.Real)).Pci.Find("0000:00:01.0"), Is.Not.Null);
    }

    [Test]
    public void Comments_AreSkipped()
    {
        MachineDescription d = MachineDescriptionReader.Parse("""
            // a lab machine
            {
              "memory": { "ram": "1G" }, // one gigabyte
              /* no IOMMU: DMA goes straight to memory */
              "iommu": null,
              "pci": [ { "slot": 1, "type": "edu" } ]
            }
            """);

        Assert.That(d.Iommu, Is.Null);
        Assert.That(d.Pci.Single().Type, Is.EqualTo("edu"));
    }

    [Test]
    public void BadJson_IsRejectedAtTheRoot()
        => AssertNames(ParseFails("""{"memory":{"ram":"1G"},"pci":[{"slot":1"""), "$", "not valid JSON");

    [Test]
    public void HugePagesOverHalfOfRam_AreRejected()
        => AssertNames(ParseFails("""{"memory":{"ram":"1G","hugePages2M":257}}"""), "memory.hugePages2M", "take more than half of 1024M");

    [Test]
    public void HugePagesOfExactlyHalfOfRam_AreAccepted()
        => Assert.That(MachineDescriptionReader.Parse("""{"memory":{"ram":"1G","hugePages2M":256}}""").Memory.HugePages2M, Is.EqualTo(256));

    [Test]
    public void ADuplicateSecondaryBus_FailsTheBuild()
        => AssertNames(
            BuildFails(Machine("""{"slot":1,"type":"root-port","secondaryBus":5},{"slot":2,"type":"root-port","secondaryBus":5}""")),
            "pci[1].secondaryBus",
            "bus 05 is already in use");

    [Test]
    public void AnMsixTableInABarTheFunctionDoesNotHave_IsRejected()
        => AssertNames(
            ParseFails(Machine("""{"slot":1,"type":"generic","bars":[{"index":0,"size":"4K"}],"msix":{"vectors":4,"tableBar":2,"pbaBar":0,"pbaOffset":"0x800"}}""")),
            "pci[0].msix.tableBar",
            "BAR 2 is not one of the function's memory BARs");

    [Test]
    public void AnMsixPbaBeyondItsBar_IsRejected()
        => AssertNames(
            ParseFails(Machine("""{"slot":1,"type":"generic","bars":[{"index":0,"size":"4K"}],"msix":{"vectors":4,"tableBar":0,"pbaBar":0,"pbaOffset":"0x1000"}}""")),
            "pci[0].msix.pbaOffset",
            "inside BAR 0");

    [Test]
    public void ASecondaryBusNotBelowItsBridgesBus_FailsTheBuild()
        => AssertNames(
            BuildFails(Machine("""{"slot":1,"type":"root-port","secondaryBus":3,"children":[{"slot":0,"type":"switch-upstream","secondaryBus":2}]}""")),
            "pci[0].children[0].secondaryBus",
            "bus 02 is not below bus 03");

    [Test]
    public void ExplicitBusNumbersOutOfOrder_GiveEachBridgeTheRangeReallyBelowIt()
    {
        SimMachine m = PciMachines.Build("""
            {"memory":{"ram":"1G"},"iommu":null,"pci":[
              {"slot":1,"type":"root-port","secondaryBus":5,"children":[{"slot":0,"type":"switch-upstream"}]},
              {"slot":2,"type":"root-port","secondaryBus":2}]}
            """);
        Assert.That(m.Bridge("0000:00:01.0").ReadConfig(PciRegs.SubordinateBus, 1), Is.EqualTo(6u));
        Assert.That(m.Bridge("0000:00:02.0").ReadConfig(PciRegs.SubordinateBus, 1), Is.EqualTo(2u), "not 6: bus 2 has nothing below it");
    }

    [Test]
    public void AFunctionNamingPciStub_IsBoundToPciStubAtBoot()
    {
        SimMachine m = PciMachines.Build(Machine("""{"slot":3,"type":"generic","vendor":"0x8086","device":"0x1234","driver":"pci-stub"}"""));
        Assert.That(m.Pci.Find("0000:00:03.0")!.Driver?.Name, Is.EqualTo("pci-stub"));
    }

    [Test]
    public void VfioPciAsABootDriver_IsRejected()
        => AssertNames(ParseFails(Machine("""{"slot":3,"type":"generic","driver":"vfio-pci"}""")), "pci[0].driver", "vfio-pci is not a host driver");

    [Test]
    public void EduWithoutAPcieField_KeepsItsConventionalConfigSpace_AndAGenericFunctionIsExpress()
    {
        SimMachine m = PciMachines.Build(Machine("""{"slot":3,"type":"edu"},{"slot":4,"type":"generic"}"""));
        Assert.That(m.Pci.Find("0000:00:03.0")!.ConfigSize, Is.EqualTo(256));
        Assert.That(m.Pci.Find("0000:00:04.0")!.ConfigSize, Is.EqualTo(4096));
    }

    [Test]
    public void FunctionsSitInSysfsUnderTheirBridge()
    {
        SimMachine m = PciMachines.OneDevice();
        Assert.That(m.Sysfs.Exists("/sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/vendor"), Is.True);
        Assert.That(m.Sysfs.ReadLink("/sys/bus/pci/devices/0000:01:00.0"), Is.EqualTo("../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0"));
    }

    [Test]
    public void TheResourceFile_ShowsDecodeBarFlags_ThirteenLinesForAnEndpointAndSeventeenForABridge()
    {
        SimMachine m = PciMachines.OneDevice();
        PciDevice d = m.Pci.Find(PciMachines.Bdf)!;
        string[] lines = m.Sysfs.Read(PciMachines.Attr(PciMachines.Bdf, "resource")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(13));
        Assert.That(lines[0], Is.EqualTo($"0x{d.ResourceStart(0):x16} 0x{d.ResourceStart(0) + (1 << 20) - 1:x16} 0x0000000000040200"));
        Assert.That(lines[2], Does.EndWith(" 0x000000000014220c"), "64-bit prefetchable");
        Assert.That(lines[3], Is.EqualTo("0x0000000000000000 0x0000000000000000 0x0000000000000000"), "the upper half of a 64-bit BAR");
        Assert.That(lines[4], Is.EqualTo($"0x{d.ResourceStart(4):x16} 0x{d.ResourceStart(4) + 31:x16} 0x0000000000040101"), "an I/O BAR in the port space");
        Assert.That(lines[6], Does.EndWith(" 0x0000000000046200"), "the ROM");
        Assert.That(m.Sysfs.Read(PciMachines.Attr("0000:00:01.0", "resource")).Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(17));
    }

    [Test]
    public void AValidDescription_NumbersBusesDepthFirst()
    {
        SimMachine m = PciMachines.Build("""
            {"memory":{"ram":"1G"},"iommu":null,"pci":[
              {"slot":2,"type":"root-port","children":[{"slot":0,"type":"generic"}]},
              {"slot":1,"type":"root-port","children":[{"slot":0,"type":"switch-upstream","children":[
                {"slot":0,"type":"switch-downstream","children":[{"slot":0,"type":"generic"}]},
                {"slot":1,"type":"switch-downstream","children":[{"slot":0,"type":"generic"}]}]}]}]}
            """);

        // Slot order first: 00:01.0 and everything below it, then 00:02.0.
        (string Bridge, int Primary, int Secondary, int Subordinate)[] expected =
        [
            ("0000:00:01.0", 0, 1, 4),
            ("0000:01:00.0", 1, 2, 4),
            ("0000:02:00.0", 2, 3, 3),
            ("0000:02:01.0", 2, 4, 4),
            ("0000:00:02.0", 0, 5, 5),
        ];
        foreach ((string bdf, int pri, int sec, int sub) in expected)
        {
            PciBridge b = m.Bridge(bdf);
            Assert.That(
                (b.ReadConfig(PciRegs.PrimaryBus, 1), b.ReadConfig(PciRegs.SecondaryBus, 1), b.ReadConfig(PciRegs.SubordinateBus, 1)),
                Is.EqualTo(((uint)pri, (uint)sec, (uint)sub)),
                bdf);
            Assert.That(b.Subordinate!.Number, Is.EqualTo(sec));
        }

        Assert.That(m.Pci.Find("0000:03:00.0"), Is.Not.Null);
        Assert.That(m.Pci.Find("0000:04:00.0"), Is.Not.Null);
        Assert.That(m.Pci.Find("0000:05:00.0"), Is.Not.Null);
        Assert.That(m.PciRootBus.AllDevicesBelow().Select(d => d.Name), Is.EqualTo(new[]
        {
            "0000:00:01.0", "0000:01:00.0", "0000:02:00.0", "0000:03:00.0", "0000:02:01.0", "0000:04:00.0", "0000:00:02.0", "0000:05:00.0",
        }));
    }

    [Test]
    public void AValidDescription_PlacesBarsNaturallyAlignedAndApart()
    {
        SimMachine m = PciMachines.Build("""
            {"memory":{"ram":"1G"},"iommu":null,"pci":[
              {"slot":1,"type":"generic","bars":[{"index":0,"size":"16K"},{"index":1,"size":"1M"},{"index":2,"size":"512M","type":"mem64","prefetch":true},{"index":4,"size":"64K","type":"mem64"}],"rom":"128K"},
              {"slot":2,"type":"generic","bars":[{"index":0,"size":"32M"},{"index":2,"size":"4K"},{"index":3,"size":16}]},
              {"slot":3,"type":"root-port","children":[{"slot":0,"type":"generic","bars":[{"index":0,"size":"2M"},{"index":1,"size":256},{"index":2,"size":"1G","type":"mem64"}]}]}]}
            """);

        var placed = new List<(long Start, long Size, PciBar Bar)>();
        foreach (PciDevice d in m.PciRootBus.AllDevicesBelow())
        {
            foreach (PciBar? bar in d.Bars)
            {
                if (bar is not null)
                {
                    placed.Add((bar.ResourceStart, bar.Size, bar));
                }
            }
        }

        Assert.That(placed, Has.Count.EqualTo(11));
        foreach ((long start, long size, PciBar bar) in placed)
        {
            string what = $"{bar.Owner.Name} BAR {bar.Index}";
            Assert.That(start % size, Is.Zero, what + " is naturally aligned");
            if (bar.Kind == PciBarKind.Memory64 && size >= 1L << 28)
            {
                Assert.That(start, Is.GreaterThanOrEqualTo(m.Memory.Mmio64Base), what + " is above RAM");
            }
            else
            {
                Assert.That(start, Is.InRange(MachineBuilder.Mmio32Start, MachineBuilder.Mmio32End - size), what + " is in the 32-bit window");
            }
        }

        placed.Sort((a, b) => a.Start.CompareTo(b.Start));
        for (int i = 1; i < placed.Count; i++)
        {
            Assert.That(placed[i].Start, Is.GreaterThanOrEqualTo(placed[i - 1].Start + placed[i - 1].Size), $"{placed[i].Bar.Owner.Name} BAR {placed[i].Bar.Index} overlaps the one before");
        }
    }

    [Test]
    public void ABarThatDoesNotFitThe32BitWindow_FailsTheBuild()
        => AssertNames(
            BuildFails(Machine("""{"slot":1,"type":"generic","bars":[{"index":0,"size":"1G"}]}""")),
            "pci[0].bars",
            "does not fit in the 32-bit MMIO window");
}
