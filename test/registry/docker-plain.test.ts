/** The docker:// transport against a plain docker-registry. */
import { dockerTransportSuite } from "./docker-suite.js";

dockerTransportSuite("plain");
